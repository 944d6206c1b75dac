//! The routing policies in effect, from two places: those set through the API (kept in the
//! store, replicated) and those in the policies file (`[policies] path`, kept in Git and
//! mounted on every replica), which win for the services they name. With them travel the
//! federation's `[authorization] default` and the trust domains it distributes. Pure: the API,
//! the store watch, the file watcher and the certificate reload drive it.

pub mod file;

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use skybridge_api::model::ServiceKey;
use skybridge_api::proto::{WirePolicies, policies_to_wire, wire};
use skybridge_api::routing::DefaultAction;
use utoipa::ToSchema;

use crate::store::Policy;

/// Where a policy in effect comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Origin {
    /// Set through the API (`PUT /api/v1/policies/...`), kept in the store.
    Api,
    /// The policies file; the API cannot change it.
    File,
}

/// The two layers and the default.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PolicyLayers {
    api: BTreeMap<ServiceKey, Policy>,
    file: BTreeMap<ServiceKey, Policy>,
    default: DefaultAction,
    /// The trust domains distributed to gateways (`[federator] distribute_trust`).
    trust: Vec<wire::TrustDomain>,
}

/// What a new policies file changed among the services it names.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FileChange {
    pub added: Vec<ServiceKey>,
    pub changed: Vec<ServiceKey>,
    pub removed: Vec<ServiceKey>,
}

impl FileChange {
    /// Whether the file's policies are the same as before.
    pub fn is_empty(&self) -> bool {
        self.added.is_empty() && self.changed.is_empty() && self.removed.is_empty()
    }
}

impl PolicyLayers {
    /// API policies as loaded from the store; no file yet.
    pub fn new(api: BTreeMap<ServiceKey, Policy>, default: DefaultAction) -> Self {
        PolicyLayers { api, file: BTreeMap::new(), default, trust: Vec::new() }
    }

    /// Every policy in effect: the file's, then the API's for the services the file does not name.
    pub fn effective(&self) -> BTreeMap<ServiceKey, Policy> {
        let mut all = self.api.clone();
        all.extend(self.file.iter().map(|(k, p)| (k.clone(), p.clone())));
        all
    }

    /// The policy in effect for `key` and where it comes from.
    pub fn get(&self, key: &ServiceKey) -> Option<(&Policy, Origin)> {
        match self.file.get(key) {
            Some(p) => Some((p, Origin::File)),
            None => self.api.get(key).map(|p| (p, Origin::Api)),
        }
    }

    /// The API's policy for `key`, whether or not the file overrides it.
    pub fn api(&self, key: &ServiceKey) -> Option<&Policy> {
        self.api.get(key)
    }

    /// Whether the file names `key` (then the API may not change it).
    pub fn in_file(&self, key: &ServiceKey) -> bool {
        self.file.contains_key(key)
    }

    /// Sets or deletes an API policy; `true` when the API layer changed.
    pub fn set_api(&mut self, key: ServiceKey, p: Option<Policy>) -> bool {
        if self.api.get(&key) == p.as_ref() {
            return false;
        }
        match p {
            Some(p) => self.api.insert(key, p),
            None => self.api.remove(&key),
        };
        true
    }

    /// Replaces the file's policies; what changed among the services it names.
    pub fn set_file(&mut self, file: BTreeMap<ServiceKey, Policy>) -> FileChange {
        let mut change = FileChange::default();
        for (k, p) in &file {
            match self.file.get(k) {
                None => change.added.push(k.clone()),
                Some(old) if old != p => change.changed.push(k.clone()),
                Some(_) => {}
            }
        }
        change.removed = self.file.keys().filter(|k| !file.contains_key(*k)).cloned().collect();
        self.file = file;
        change
    }

    /// The federation's default for sources no list names.
    pub fn default(&self) -> DefaultAction {
        self.default
    }

    /// Sets the default; `true` when it changed.
    pub fn set_default(&mut self, default: DefaultAction) -> bool {
        std::mem::replace(&mut self.default, default) != default
    }

    /// Sets the distributed trust domains; `true` when they changed.
    pub fn set_trust(&mut self, trust: Vec<wire::TrustDomain>) -> bool {
        std::mem::replace(&mut self.trust, trust.clone()) != trust
    }

    /// What gateways get.
    pub fn wire(&self) -> WirePolicies {
        WirePolicies { trust_domains: self.trust.clone(), ..policies_to_wire(&self.effective(), self.default) }
    }
}

#[cfg(test)]
mod tests {
    use skybridge_api::model::ClusterId;

    use super::*;

    fn key(s: &str) -> ServiceKey {
        s.parse().unwrap()
    }

    fn avoid(c: &str) -> Policy {
        Policy { avoid: vec![ClusterId::new(c).unwrap()], ..Default::default() }
    }

    #[test]
    fn the_file_wins_for_the_services_it_names_and_the_api_keeps_the_rest() {
        let mut l = PolicyLayers::new(
            BTreeMap::from([(key("prod/a"), avoid("x")), (key("prod/b"), avoid("y"))]),
            DefaultAction::Deny,
        );
        let change = l.set_file(BTreeMap::from([(key("prod/b"), avoid("z")), (key("prod/c"), avoid("z"))]));
        assert_eq!(change, FileChange { added: vec![key("prod/b"), key("prod/c")], changed: vec![], removed: vec![] });
        assert_eq!(l.get(&key("prod/a")), Some((&avoid("x"), Origin::Api)));
        assert_eq!(l.get(&key("prod/b")), Some((&avoid("z"), Origin::File)));
        assert_eq!(l.api(&key("prod/b")), Some(&avoid("y")), "the API's policy is kept underneath");
        assert_eq!(l.effective().len(), 3);
        assert!(l.wire().deny_by_default);

        // The file drops prod/b: the API's policy is in effect again.
        let change = l.set_file(BTreeMap::from([(key("prod/c"), avoid("w"))]));
        assert_eq!(change, FileChange { added: vec![], changed: vec![key("prod/c")], removed: vec![key("prod/b")] });
        assert_eq!(l.get(&key("prod/b")), Some((&avoid("y"), Origin::Api)));
        assert!(l.set_file(BTreeMap::from([(key("prod/c"), avoid("w"))])).is_empty());

        assert!(!l.set_api(key("prod/a"), Some(avoid("x"))), "the same policy again is no change");
        assert!(l.set_api(key("prod/a"), None));
        assert_eq!(l.get(&key("prod/a")), None);
    }
}
