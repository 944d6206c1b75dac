//! What a replica knows from etcd, pure: range reads and watch events in, effects on the
//! shared state out. A catalog version is served only when its head has arrived and the rows
//! hash to the head's digest, so a half-written version (a leader that died between the
//! transactions of a large change) or a row damaged by another writer is never pushed to
//! gateways; the last good catalog stays.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use serde::de::DeserializeOwned;
use skybridge_api::catalog::{GlobalCatalog, GlobalService, SourceId, digest};
use skybridge_api::model::ServiceKey;

use super::election::Holder;
use crate::core::SourceStatus;
use crate::state::GatewayKey;
use crate::store::etcd::Change;
use crate::store::etcd::keys::{Key, Keys};
use crate::store::etcd::records::{LeaderRecord, PresenceRecord, ReplicaRecord};
use crate::store::rows::CatalogHead;
use crate::store::{Event, GatewayRecord, Policy};

/// What the shell applies to the shared state.
#[derive(Debug, Clone, PartialEq)]
pub enum Effect {
    /// A verified catalog version to serve.
    Publish(Arc<GlobalCatalog>),
    Policy(ServiceKey, Option<Policy>),
    Gateway(GatewayRecord),
    GatewayRemoved(GatewayKey),
    /// A session held by `replica` appeared or changed (Some), or ended (None).
    Presence(GatewayKey, String, Option<PresenceRecord>),
    Replica(String, Option<ReplicaRecord>),
    /// The leader key (or nobody) as of store revision `at`.
    Leader {
        holder: Option<Holder>,
        at: i64,
    },
    Sources(BTreeMap<SourceId, SourceStatus>),
    /// An event another replica (or this one) recorded.
    Event(Event),
    /// An operator confirmed a source's held removal.
    Confirm(SourceId),
    /// A key whose value this federator cannot use: served data stays as it was.
    Invalid {
        key: String,
        reason: String,
    },
    /// The catalog head does not match its rows.
    Mismatch {
        version: u64,
        stored: u64,
        computed: u64,
    },
}

/// How far a watch response brings the view. Not the header's revision when the response
/// carries events or announces a new watch: that is the store's revision when the response was
/// made, and older events may still be on their way (a watch that breaks before they arrive
/// must resume after the last one seen, or they are lost). A progress notice (no events, not a
/// creation) does promise every event up to its revision.
pub fn reached(current: i64, created: bool, header: Option<i64>, changes: &[Change]) -> i64 {
    match changes.iter().map(|c| c.mod_revision).max() {
        Some(last) => current.max(last),
        None if created => current,
        None => current.max(header.unwrap_or(current)),
    }
}

/// The replicated view.
#[derive(Debug)]
pub struct View {
    keys: Keys,
    /// The revision everything here reflects.
    revision: i64,
    /// The catalog last published (shared with what is served: no second copy is kept).
    current: Arc<GlobalCatalog>,
    /// Row changes since `current`: a service set, or removed (None).
    pending: BTreeMap<ServiceKey, Option<GlobalService>>,
    /// The latest catalog head seen.
    head: Option<CatalogHead>,
    policies: BTreeSet<ServiceKey>,
    gateways: BTreeSet<GatewayKey>,
    presence: BTreeSet<(GatewayKey, String)>,
    replicas: BTreeSet<String>,
    leader: Option<Holder>,
    /// Keys that currently hold something unusable.
    invalid: BTreeMap<String, String>,
}

impl View {
    /// An empty view for the layout `keys`, serving `current` (what was loaded before, or the
    /// empty catalog).
    pub fn new(keys: Keys, current: Arc<GlobalCatalog>) -> View {
        View {
            keys,
            revision: 0,
            current,
            pending: BTreeMap::new(),
            head: None,
            policies: BTreeSet::new(),
            gateways: BTreeSet::new(),
            presence: BTreeSet::new(),
            replicas: BTreeSet::new(),
            leader: None,
            invalid: BTreeMap::new(),
        }
    }

    /// The revision to resume watching after.
    pub fn revision(&self) -> i64 {
        self.revision
    }

    /// The keys holding unusable values right now.
    pub fn invalid(&self) -> &BTreeMap<String, String> {
        &self.invalid
    }

    /// Replaces everything with a full read at `revision`: what vanished since is removed,
    /// the rest re-applied (past events are not replayed).
    pub fn reset(&mut self, revision: i64, changes: &[Change]) -> Vec<Effect> {
        let (policies, gateways, presence, replicas) = (
            std::mem::take(&mut self.policies),
            std::mem::take(&mut self.gateways),
            std::mem::take(&mut self.presence),
            std::mem::take(&mut self.replicas),
        );
        let had_leader = self.leader.take();
        self.pending.clear();
        self.head = None;
        self.invalid.clear();
        let mut effects = Vec::new();
        for c in changes {
            self.one(c, false, &mut effects);
        }
        // Services served now but absent from the read are gone.
        let gone: Vec<ServiceKey> =
            self.current.services.keys().filter(|k| !self.pending.contains_key(*k)).cloned().collect();
        for k in gone {
            self.pending.insert(k, None);
        }
        for k in policies.difference(&self.policies) {
            effects.push(Effect::Policy(k.clone(), None));
        }
        for k in gateways.difference(&self.gateways) {
            effects.push(Effect::GatewayRemoved(k.clone()));
        }
        for (k, r) in presence.difference(&self.presence) {
            effects.push(Effect::Presence(k.clone(), r.clone(), None));
        }
        for r in replicas.difference(&self.replicas) {
            effects.push(Effect::Replica(r.clone(), None));
        }
        if self.leader.is_none() && had_leader.is_some() {
            effects.push(Effect::Leader { holder: None, at: revision });
        }
        self.try_publish(&mut effects);
        self.revision = revision;
        effects
    }

    /// Applies watch events up to `revision`.
    /// Applies watch events up to `revision`. A head is tried at the end of the revision that
    /// wrote it: one response may also carry the first rows of the next version.
    pub fn apply(&mut self, revision: i64, changes: &[Change]) -> Vec<Effect> {
        let mut effects = Vec::new();
        let mut head_changed = false;
        for (i, c) in changes.iter().enumerate() {
            if c.mod_revision <= self.revision {
                continue; // already in the view (a watch resumed from an older revision)
            }
            head_changed |= self.one(c, true, &mut effects);
            let revision_ends = changes.get(i + 1).is_none_or(|next| next.mod_revision != c.mod_revision);
            if head_changed && revision_ends {
                self.try_publish(&mut effects);
                head_changed = false;
            }
        }
        self.revision = self.revision.max(revision);
        effects
    }

    fn decode<T: DeserializeOwned>(&mut self, key: &str, value: &[u8], effects: &mut Vec<Effect>) -> Option<T> {
        match serde_json::from_slice(value) {
            Ok(v) => {
                self.invalid.remove(key);
                Some(v)
            }
            Err(e) => {
                let reason = format!("not a value this federator reads: {e}");
                self.invalid.insert(key.to_owned(), reason.clone());
                effects.push(Effect::Invalid { key: key.to_owned(), reason });
                None
            }
        }
    }

    /// Applies one change; true when it touched the catalog head.
    fn one(&mut self, c: &Change, live: bool, effects: &mut Vec<Effect>) -> bool {
        let text = String::from_utf8_lossy(&c.key).into_owned();
        let key = match self.keys.parse(&c.key) {
            Ok(k) => k,
            Err(reason) => {
                if c.value.is_some() {
                    self.invalid.insert(text.clone(), reason.clone());
                    effects.push(Effect::Invalid { key: text, reason });
                } else {
                    self.invalid.remove(&text);
                }
                return false;
            }
        };
        if c.value.is_none() {
            self.invalid.remove(&text);
        }
        let value = c.value.as_deref();
        match key {
            Key::CatalogHead => match value {
                Some(v) => {
                    if let Some(h) = self.decode::<CatalogHead>(&text, v, effects) {
                        self.head = Some(h);
                        return true;
                    }
                }
                None => self.head = None,
            },
            Key::CatalogService(k) => match value {
                Some(v) => {
                    // An unreadable row is left out: the digest check then keeps the version
                    // from being served.
                    let s = self.decode::<GlobalService>(&text, v, effects);
                    self.pending.insert(k, s);
                }
                None => drop(self.pending.insert(k, None)),
            },
            Key::Policy(k) => {
                let p = value.and_then(|v| self.decode::<Policy>(&text, v, effects));
                if p.is_some() {
                    self.policies.insert(k.clone());
                } else {
                    self.policies.remove(&k);
                }
                effects.push(Effect::Policy(k, p));
            }
            Key::Gateway(cluster, instance) => {
                let key = (cluster, instance);
                match value.and_then(|v| self.decode::<GatewayRecord>(&text, v, effects)) {
                    Some(r) if (&r.cluster, &r.instance) == (&key.0, &key.1) => {
                        self.gateways.insert(key);
                        effects.push(Effect::Gateway(r));
                    }
                    Some(_) => {
                        let reason = "the record names another gateway than its key".to_owned();
                        self.invalid.insert(text.clone(), reason.clone());
                        effects.push(Effect::Invalid { key: text, reason });
                    }
                    None => {
                        if self.gateways.remove(&key) {
                            effects.push(Effect::GatewayRemoved(key));
                        }
                    }
                }
            }
            Key::Presence(cluster, instance, replica) => {
                let p = value.and_then(|v| self.decode::<PresenceRecord>(&text, v, effects));
                let k = ((cluster, instance), replica);
                if p.is_some() {
                    self.presence.insert(k.clone());
                } else {
                    self.presence.remove(&k);
                }
                effects.push(Effect::Presence(k.0, k.1, p));
            }
            Key::Replica(name) => {
                let r = value.and_then(|v| self.decode::<ReplicaRecord>(&text, v, effects));
                if r.is_some() {
                    self.replicas.insert(name.clone());
                } else {
                    self.replicas.remove(&name);
                }
                effects.push(Effect::Replica(name, r));
            }
            Key::Leader => {
                let l = value.and_then(|v| self.decode::<LeaderRecord>(&text, v, effects)).map(|l| Holder {
                    name: l.name,
                    term: c.create_revision,
                    lease: c.lease,
                });
                if l != self.leader {
                    self.leader = l.clone();
                    effects.push(Effect::Leader { holder: l, at: c.mod_revision });
                }
            }
            Key::SourceStatus => {
                if let Some(s) = value.and_then(|v| self.decode(&text, v, effects)) {
                    effects.push(Effect::Sources(s));
                }
            }
            Key::Event => {
                if live && let Some(mut e) = value.and_then(|v| self.decode::<Event>(&text, v, effects)) {
                    // The seq is etcd's: the revision that created the key.
                    e.seq = u64::try_from(c.create_revision).unwrap_or_default();
                    effects.push(Effect::Event(e));
                }
            }
            Key::Confirm(source) => {
                if live && value.is_some() {
                    effects.push(Effect::Confirm(source));
                }
            }
            // The leader reads sources when it takes over; nobody serves them.
            Key::Schema | Key::SourceHead(_) | Key::SourceService(..) => {}
        }
        false
    }

    /// Publishes the catalog the head and the rows describe (the last one served with the
    /// changes since), when it verifies and is new. Until it verifies, the changes are kept:
    /// the next head is checked against all of them.
    fn try_publish(&mut self, effects: &mut Vec<Effect>) {
        let Some(head) = &self.head else { return };
        if (head.version, head.digest) == (self.current.version, self.current.digest) {
            return;
        }
        let mut services = self.current.services.clone();
        for (k, s) in &self.pending {
            match s {
                Some(s) => drop(services.insert(k.clone(), s.clone())),
                None => drop(services.remove(k)),
            }
        }
        let catalog =
            GlobalCatalog { version: head.version, digest: head.digest, clusters: head.clusters.clone(), services };
        let computed = digest(&catalog);
        if computed != head.digest {
            effects.push(Effect::Mismatch { version: head.version, stored: head.digest, computed });
            return;
        }
        self.pending.clear();
        self.current = Arc::new(catalog);
        effects.push(Effect::Publish(self.current.clone()));
    }
}

#[cfg(test)]
mod tests {
    use skybridge_api::catalog::{ClusterInfo, PortSpec};
    use skybridge_api::model::{Cloud, ClusterId, Protocol};

    use super::*;
    use crate::store::rows::encode;

    fn keys() -> Keys {
        Keys::new("/sb")
    }

    fn put(key: String, value: Vec<u8>, rev: i64) -> Change {
        Change { key: key.into_bytes(), value: Some(value), create_revision: rev, mod_revision: rev, lease: 5 }
    }

    fn del(key: String, rev: i64) -> Change {
        Change { key: key.into_bytes(), value: None, create_revision: 0, mod_revision: rev, lease: 0 }
    }

    fn svc(port: u16) -> GlobalService {
        GlobalService {
            ports: vec![PortSpec { port, protocol: Protocol::Http }],
            clusters: BTreeMap::new(),
            conflicts: vec![],
        }
    }

    fn catalog(version: u64, services: &[(&str, u16)]) -> GlobalCatalog {
        let id = ClusterId::new("a-1").unwrap();
        let mut c = GlobalCatalog {
            version,
            digest: 0,
            clusters: BTreeMap::from([(
                id.clone(),
                ClusterInfo { id, cloud: Cloud::Aws, region: "r".into(), network: None },
            )]),
            services: services.iter().map(|(n, p)| (ServiceKey::new("prod", n).unwrap(), svc(*p))).collect(),
        };
        c.digest = digest(&c);
        c
    }

    /// The changes a leader writes for `c` (every row, then the head).
    fn written(c: &GlobalCatalog, rev: i64) -> Vec<Change> {
        let k = keys();
        let mut out: Vec<Change> =
            c.services.iter().map(|(key, s)| put(k.catalog_service(key), encode(s).unwrap(), rev)).collect();
        let head = CatalogHead {
            version: c.version,
            digest: c.digest,
            clusters: c.clusters.clone(),
            term: 1,
            leader: "a".into(),
        };
        out.push(put(k.catalog_head(), encode(&head).unwrap(), rev));
        out
    }

    fn published(effects: &[Effect]) -> Vec<u64> {
        effects.iter().filter_map(|e| if let Effect::Publish(c) = e { Some(c.version) } else { None }).collect()
    }

    #[test]
    fn a_version_is_served_when_its_head_arrives_and_verifies() {
        let mut v = View::new(keys(), Arc::default());
        let c1 = catalog(1, &[("a", 80), ("b", 80)]);
        let effects = v.reset(10, &written(&c1, 10));
        assert_eq!(published(&effects), [1]);
        // A large version in two transactions: rows first (nothing served), head last.
        let c2 = catalog(2, &[("a", 81), ("b", 80), ("c", 80)]);
        let mut changes = written(&c2, 11);
        let head = changes.pop().unwrap();
        assert!(published(&v.apply(11, &changes)).is_empty(), "rows without their head are not served");
        let effects = v.apply(12, &[Change { mod_revision: 12, ..head }]);
        assert_eq!(published(&effects), [2]);
        let Effect::Publish(c) = &effects[0] else { panic!() };
        assert_eq!(**c, c2);
        // Replayed events (a watch resumed from an older revision) change nothing.
        assert!(v.apply(12, &written(&c2, 12)).is_empty());
    }

    #[test]
    fn a_version_is_served_even_when_the_next_one_starts_in_the_same_response() {
        let mut v = View::new(keys(), Arc::default());
        v.reset(10, &written(&catalog(1, &[("a", 80)]), 10));
        let c2 = catalog(2, &[("a", 81)]);
        let mut batch = written(&c2, 11);
        // The next version's first transaction (its rows, no head yet) in the same response.
        let c3 = catalog(3, &[("a", 82)]);
        let mut next = written(&c3, 12);
        next.pop();
        batch.extend(next);
        assert_eq!(published(&v.apply(12, &batch)), [2]);
    }

    #[test]
    fn a_damaged_row_keeps_the_last_good_catalog_and_is_named() {
        let mut v = View::new(keys(), Arc::default());
        v.reset(10, &written(&catalog(1, &[("a", 80)]), 10));
        let c2 = catalog(2, &[("a", 81)]);
        let mut changes = written(&c2, 11);
        changes[0].value = Some(b"{not json".to_vec());
        let effects = v.apply(11, &changes);
        assert!(published(&effects).is_empty(), "{effects:?}");
        assert!(
            effects.iter().any(|e| matches!(e, Effect::Invalid { key, .. } if key == "/sb/catalog/services/prod/a"))
        );
        assert!(effects.iter().any(|e| matches!(e, Effect::Mismatch { version: 2, .. })));
        assert_eq!(v.invalid().len(), 1);
        // The next good version repairs it.
        let effects = v.apply(12, &written(&catalog(3, &[("a", 82)]), 12));
        assert_eq!(published(&effects), [3]);
        assert!(v.invalid().is_empty());
    }

    #[test]
    fn foreign_keys_are_reported_not_applied() {
        let mut v = View::new(keys(), Arc::default());
        let effects = v.reset(5, &[put("/sb/other/thing".into(), b"x".to_vec(), 5)]);
        assert!(matches!(&effects[..], [Effect::Invalid { key, .. }] if key == "/sb/other/thing"));
        assert!(v.apply(6, &[del("/sb/other/thing".into(), 6)]).is_empty());
        assert!(v.invalid().is_empty());
    }

    #[test]
    fn a_reload_removes_what_vanished_and_events_are_only_live() {
        let k = keys();
        let svc_key = ServiceKey::new("prod", "a").unwrap();
        let policy = encode(&Policy::default()).unwrap();
        let event = encode(&Event { seq: 1, at: 1, kind: "x".into(), message: "m".into() }).unwrap();
        let mut v = View::new(k.clone(), Arc::default());
        let effects =
            v.reset(5, &[put(k.policy(&svc_key), policy.clone(), 4), put(k.event(1, "a", 0), event.clone(), 5)]);
        assert_eq!(effects, [Effect::Policy(svc_key.clone(), Some(Policy::default()))], "no replayed event");
        let effects = v.apply(6, &[put(k.event(2, "a", 1), event, 6)]);
        assert!(matches!(&effects[..], [Effect::Event(e)] if e.seq == 6), "{effects:?}");
        assert_eq!(v.reset(7, &[]), [Effect::Policy(svc_key, None)]);
    }

    #[test]
    fn a_watch_resumes_after_the_last_event_it_delivered() {
        let c = |rev| put("/sb/policies/prod/a".into(), b"{}".to_vec(), rev);
        // Created at store revision 16, events from 8 still to come: nothing is reached yet.
        assert_eq!(reached(7, true, Some(16), &[]), 7);
        assert_eq!(reached(7, false, Some(16), &[c(8), c(9)]), 9, "not the header's 16");
        assert_eq!(reached(9, false, Some(20), &[]), 20, "a progress notice");
        assert_eq!(reached(20, false, Some(12), &[]), 20, "never backwards");
    }

    #[test]
    fn the_leader_key_is_followed() {
        let k = keys();
        let mut v = View::new(k.clone(), Arc::default());
        let rec = encode(&LeaderRecord { name: "b".into(), since: 1 }).unwrap();
        let b = Holder { name: "b".into(), term: 3, lease: 5 };
        assert_eq!(v.apply(3, &[put(k.leader(), rec, 3)]), [Effect::Leader { holder: Some(b), at: 3 }]);
        assert_eq!(v.apply(4, &[del(k.leader(), 4)]), [Effect::Leader { holder: None, at: 4 }]);
    }
}
