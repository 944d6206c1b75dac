//! The etcd key layout, under the configured prefix `P` (pure: building and parsing keys).
//!
//! | key | value | written by |
//! |---|---|---|
//! | `P/schema` | layout version | first replica |
//! | `P/leader` | leader record, on the leader's lease | the leader (campaign) |
//! | `P/replicas/<name>` | replica record, on its lease | each replica |
//! | `P/catalog/head` | version, digest, clusters, term | the leader, fenced, last in a version |
//! | `P/catalog/services/<ns>/<name>` | one merged service | the leader, fenced |
//! | `P/sources/<id>` | a source's clusters and sync times | the leader, fenced |
//! | `P/source-services/<id>/<ns>/<name>` | a source's exports of one service | the leader, fenced |
//! | `P/status/sources` | source health as the API shows it | the leader, fenced |
//! | `P/policies/<ns>/<name>` | a routing policy | any replica (API) |
//! | `P/gateways/<cluster>/<instance>` | gateway record | any replica; removed by the leader |
//! | `P/presence/<cluster>/<instance>/<replica>` | a live session, on the replica's lease | the replica holding it |
//! | `P/events/<time>-<replica>-<n>` | an event; its seq is the key's create revision | any replica |
//! | `P/confirm/<source>` | an operator confirmed the source's held removal | any replica (API) |
//!
//! Names never contain `/` (cluster ids and namespaces are DNS labels, instances and replica
//! names are pod-like names, source ids are lowercase labels), so a key splits unambiguously.

use skybridge_api::catalog::SourceId;
use skybridge_api::model::{ClusterId, ServiceKey};

/// The layout version under the prefix; a replica refuses a prefix with a newer one.
pub const SCHEMA: u64 = 1;

/// What a key under the prefix names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Key {
    Schema,
    Leader,
    Replica(String),
    CatalogHead,
    CatalogService(ServiceKey),
    SourceHead(SourceId),
    SourceService(SourceId, ServiceKey),
    SourceStatus,
    Policy(ServiceKey),
    Gateway(ClusterId, String),
    Presence(ClusterId, String, String),
    Event,
    Confirm(SourceId),
}

/// Builds and parses keys under one prefix.
#[derive(Debug, Clone)]
pub struct Keys {
    /// The prefix with its trailing `/`: watching `P/` never sees a sibling prefix `P2/`.
    root: String,
}

impl Keys {
    /// Keys under `prefix` (validated by the config: absolute, no trailing `/`).
    pub fn new(prefix: &str) -> Keys {
        Keys { root: format!("{prefix}/") }
    }

    /// `P/`: every key of this federation.
    pub fn root(&self) -> &str {
        &self.root
    }

    pub fn schema(&self) -> String {
        format!("{}schema", self.root)
    }
    pub fn leader(&self) -> String {
        format!("{}leader", self.root)
    }
    pub fn replica(&self, name: &str) -> String {
        format!("{}replicas/{name}", self.root)
    }
    pub fn catalog_head(&self) -> String {
        format!("{}catalog/head", self.root)
    }
    pub fn catalog_service(&self, k: &ServiceKey) -> String {
        format!("{}catalog/services/{k}", self.root)
    }
    pub fn source_head(&self, id: &str) -> String {
        format!("{}sources/{id}", self.root)
    }
    pub fn source_service(&self, id: &str, k: &ServiceKey) -> String {
        format!("{}source-services/{id}/{k}", self.root)
    }
    pub fn source_status(&self) -> String {
        format!("{}status/sources", self.root)
    }
    pub fn policy(&self, k: &ServiceKey) -> String {
        format!("{}policies/{k}", self.root)
    }
    pub fn gateway(&self, cluster: &ClusterId, instance: &str) -> String {
        format!("{}gateways/{cluster}/{instance}", self.root)
    }
    /// Every presence key of one gateway (a prefix).
    pub fn presence_of(&self, cluster: &ClusterId, instance: &str) -> String {
        format!("{}presence/{cluster}/{instance}/", self.root)
    }
    pub fn presence(&self, cluster: &ClusterId, instance: &str, replica: &str) -> String {
        format!("{}{replica}", self.presence_of(cluster, instance))
    }
    pub fn events(&self) -> String {
        format!("{}events/", self.root)
    }
    /// An operator's confirmation of `source`'s held removal.
    pub fn confirm(&self, source: &str) -> String {
        format!("{}confirm/{source}", self.root)
    }

    /// An event's key: unique per replica and append, sorted by time.
    pub fn event(&self, at: u64, replica: &str, n: u64) -> String {
        format!("{}events/{at:013}-{replica}-{n}", self.root)
    }

    /// What `key` names; an error (naming the key) for anything under the prefix this version
    /// does not write, which means another program or a newer federator shares the prefix.
    pub fn parse(&self, key: &[u8]) -> Result<Key, String> {
        let text =
            std::str::from_utf8(key).map_err(|_| format!("key {} is not UTF-8", String::from_utf8_lossy(key)))?;
        let unknown = || format!("key {text} is not one this federator writes (is another program using the prefix?)");
        let rest = text.strip_prefix(&self.root).ok_or_else(unknown)?;
        let parts: Vec<&str> = rest.split('/').collect();
        let service = |ns: &str, name: &str| ServiceKey::new(ns, name).map_err(|e| format!("key {text}: {e}"));
        let cluster = |c: &str| ClusterId::new(c).map_err(|e| format!("key {text}: {e}"));
        let name = |n: &str| {
            if crate::config::valid_replica_name(n) {
                Ok(n.to_owned())
            } else {
                Err(format!("key {text}: bad name {n:?}"))
            }
        };
        Ok(match parts.as_slice() {
            ["schema"] => Key::Schema,
            ["leader"] => Key::Leader,
            ["replicas", n] => Key::Replica(name(n)?),
            ["catalog", "head"] => Key::CatalogHead,
            ["catalog", "services", ns, svc] => Key::CatalogService(service(ns, svc)?),
            ["sources", id] => Key::SourceHead(name(id)?),
            ["source-services", id, ns, svc] => Key::SourceService(name(id)?, service(ns, svc)?),
            ["status", "sources"] => Key::SourceStatus,
            ["policies", ns, svc] => Key::Policy(service(ns, svc)?),
            ["gateways", c, i] => Key::Gateway(cluster(c)?, name(i)?),
            ["presence", c, i, r] => Key::Presence(cluster(c)?, name(i)?, name(r)?),
            ["confirm", id] => Key::Confirm(name(id)?),
            ["events", id] => {
                name(id)?;
                Key::Event
            }
            _ => return Err(unknown()),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_key_parses_back() {
        let k = Keys::new("/skybridge");
        let svc = ServiceKey::new("prod", "payments").unwrap();
        let c = ClusterId::new("aws-1").unwrap();
        for (key, want) in [
            (k.schema(), Key::Schema),
            (k.leader(), Key::Leader),
            (k.replica("fed-0"), Key::Replica("fed-0".into())),
            (k.catalog_head(), Key::CatalogHead),
            (k.catalog_service(&svc), Key::CatalogService(svc.clone())),
            (k.source_head("aws-prod"), Key::SourceHead("aws-prod".into())),
            (k.source_service("aws-prod", &svc), Key::SourceService("aws-prod".into(), svc.clone())),
            (k.source_status(), Key::SourceStatus),
            (k.policy(&svc), Key::Policy(svc.clone())),
            (k.gateway(&c, "gw-0"), Key::Gateway(c.clone(), "gw-0".into())),
            (k.presence(&c, "gw-0", "fed-1"), Key::Presence(c.clone(), "gw-0".into(), "fed-1".into())),
            (k.event(1_700_000_000_000, "fed-0", 7), Key::Event),
            (k.confirm("static"), Key::Confirm("static".into())),
        ] {
            assert_eq!(k.parse(key.as_bytes()), Ok(want), "{key}");
        }
        assert!(k.event(9, "a", 0) < k.event(10, "a", 0), "event keys sort by time");
    }

    #[test]
    fn foreign_keys_are_named() {
        let k = Keys::new("/skybridge");
        for bad in
            ["/skybridge/other", "/skybridge/catalog/services/Prod/x", "/skybridge/gateways/aws-1", "/elsewhere/x"]
        {
            let e = k.parse(bad.as_bytes()).unwrap_err();
            assert!(e.contains(bad), "{e}");
        }
        assert!(k.parse(b"/skybridge/\xff").unwrap_err().contains("UTF-8"));
    }
}
