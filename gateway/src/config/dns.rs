//! `[dns]`: what the gateway's `clusterset.local` DNS server answers and how much it takes.

use std::net::IpAddr;
use std::time::Duration;

use serde::Deserialize;
use skybridge_api::config::{ConfigError, duration, invalid};

use super::limits::within;

/// One address the A/AAAA answers give: an IP literal, or a host name the gateway resolves (the
/// egress Service's in-cluster name, whose ClusterIP is known only once the Service exists).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AnswerAddress {
    Ip(IpAddr),
    Host(String),
}

impl<'de> Deserialize<'de> for AnswerAddress {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Ok(match s.parse() {
            Ok(ip) => AnswerAddress::Ip(ip),
            Err(_) => AnswerAddress::Host(s),
        })
    }
}

/// The DNS server's answers and bounds (`[dns]`); it listens where `listen.dns` says.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DnsSection {
    /// Addresses of `<svc>.<ns>.svc.clusterset.local`: where clients reach the egress listeners
    /// (in Kubernetes, the egress Service). Empty: the egress listeners' own address when it is
    /// not a wildcard.
    #[serde(default)]
    pub answer: Vec<AnswerAddress>,
    /// TTL of every answer and of negative answers (the SOA minimum): how long a catalog change
    /// may stay hidden in caches.
    #[serde(default = "defaults::ttl", with = "duration")]
    pub ttl: Duration,
    /// How often host names in `answer` are resolved again.
    #[serde(default = "defaults::resolve_interval", with = "duration")]
    pub resolve_interval: Duration,
    /// The port SRV records give for TLS services (the egress Service's port in front of the
    /// SNI listener). Unset: the SNI listener's own port.
    #[serde(default)]
    pub tls_port: Option<u16>,
    /// The port SRV records give for HTTP services. Unset: the HTTP listener's own port.
    #[serde(default)]
    pub http_port: Option<u16>,
    /// Queries answered per second, UDP and TCP together; the rest are dropped (a resolver
    /// retries) so that a flood costs little CPU.
    #[serde(default = "defaults::max_queries_per_second")]
    pub max_queries_per_second: u32,
    /// DNS-over-TCP connections open at once; more are closed on accept.
    #[serde(default = "defaults::max_tcp_connections")]
    pub max_tcp_connections: usize,
    /// How long a TCP connection may wait for its next query.
    #[serde(default = "defaults::tcp_idle_timeout", with = "duration")]
    pub tcp_idle_timeout: Duration,
}

impl Default for DnsSection {
    fn default() -> Self {
        DnsSection {
            answer: Vec::new(),
            ttl: defaults::ttl(),
            resolve_interval: defaults::resolve_interval(),
            tls_port: None,
            http_port: None,
            max_queries_per_second: defaults::max_queries_per_second(),
            max_tcp_connections: defaults::max_tcp_connections(),
            tcp_idle_timeout: defaults::tcp_idle_timeout(),
        }
    }
}

impl DnsSection {
    pub(super) fn validate(&self) -> Result<(), ConfigError> {
        // DNS TTLs are whole seconds; a day bounds how long a removed service may linger.
        within("dns.ttl", self.ttl, Duration::from_secs(1), Duration::from_secs(86_400))?;
        within("dns.resolve_interval", self.resolve_interval, Duration::from_secs(1), Duration::from_secs(3600))?;
        within("dns.tcp_idle_timeout", self.tcp_idle_timeout, Duration::from_millis(100), Duration::from_secs(300))?;
        if self.max_queries_per_second == 0 {
            return Err(invalid(
                "dns.max_queries_per_second",
                0,
                "must be positive (listen.dns = \"off\" turns DNS off)",
            ));
        }
        if self.max_tcp_connections == 0 || self.max_tcp_connections > 65_536 {
            return Err(invalid("dns.max_tcp_connections", self.max_tcp_connections, "must be between 1 and 65536"));
        }
        for (i, a) in self.answer.iter().enumerate() {
            match a {
                AnswerAddress::Ip(ip) if ip.is_unspecified() => {
                    return Err(invalid(format!("dns.answer[{i}]"), ip, "a wildcard address cannot be dialled"));
                }
                AnswerAddress::Host(h) if !valid_host(h) => {
                    return Err(invalid(format!("dns.answer[{i}]"), h, "expected an IP address or a host name"));
                }
                _ => {}
            }
        }
        for (key, port) in [("dns.tls_port", self.tls_port), ("dns.http_port", self.http_port)] {
            if port == Some(0) {
                return Err(invalid(key, 0, "expected the port clients dial (1-65535)"));
            }
        }
        Ok(())
    }
}

/// A DNS host name: dot-separated labels of letters, digits and '-', not starting or ending
/// with '-'; an optional trailing dot.
fn valid_host(h: &str) -> bool {
    let h = h.strip_suffix('.').unwrap_or(h);
    !h.is_empty()
        && h.len() <= 253
        && h.split('.').all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
                && !l.starts_with('-')
                && !l.ends_with('-')
        })
}

mod defaults {
    use std::time::Duration;
    pub(super) fn ttl() -> Duration {
        Duration::from_secs(5)
    }
    pub(super) fn resolve_interval() -> Duration {
        Duration::from_secs(30)
    }
    pub(super) fn max_queries_per_second() -> u32 {
        5_000
    }
    pub(super) fn max_tcp_connections() -> usize {
        128
    }
    pub(super) fn tcp_idle_timeout() -> Duration {
        Duration::from_secs(10)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_names_and_addresses() {
        assert!(valid_host("skybridge-egress.skybridge-system.svc.cluster.local"));
        assert!(valid_host("egress."));
        for bad in ["", "a..b", "-a", "a-", "a_b.c", "a b", &"x".repeat(64)] {
            assert!(!valid_host(bad), "{bad:?}");
        }
        let ip: AnswerAddress = serde_json_like("10.96.0.42");
        assert_eq!(ip, AnswerAddress::Ip("10.96.0.42".parse().unwrap()));
        assert_eq!(serde_json_like("::1"), AnswerAddress::Ip("::1".parse().unwrap()));
        assert_eq!(serde_json_like("egress.ns"), AnswerAddress::Host("egress.ns".into()));
    }

    fn serde_json_like(s: &str) -> AnswerAddress {
        #[derive(Deserialize)]
        struct W {
            a: AnswerAddress,
        }
        toml::from_str::<W>(&format!("a = {s:?}")).unwrap().a
    }
}
