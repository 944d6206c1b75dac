//! The keys a replica owns on its lease (its replica record and the presence of the gateway
//! sessions it holds), pure: what should be in etcd in, the puts and deletes that get it there
//! out. Presence is only rewritten when what it shows changes (see
//! [`PresenceRecord::needs_write`]), so a quiet federation writes nothing.

use std::collections::BTreeMap;

use skybridge_api::catalog::UnixMillis;

use crate::store::etcd::records::{PresenceRecord, ReplicaRecord};
use crate::store::rows::encode;

/// How long small latency movements wait before they are written anyway.
pub const LATENCY_REFRESH_MS: u64 = 30_000;

/// A value this replica keeps under its lease.
#[derive(Debug, Clone, PartialEq)]
pub enum Owned {
    Replica(ReplicaRecord),
    Presence(PresenceRecord),
}

impl Owned {
    fn bytes(&self) -> Vec<u8> {
        // These types always encode.
        match self {
            Owned::Replica(r) => encode(r),
            Owned::Presence(p) => encode(p),
        }
        .unwrap_or_default()
    }

    fn needs_write(&self, next: &Owned, written_at: UnixMillis, now: UnixMillis) -> bool {
        match (self, next) {
            (Owned::Presence(a), Owned::Presence(b)) => a.needs_write(b, written_at, now, LATENCY_REFRESH_MS),
            (a, b) => a != b,
        }
    }
}

/// A plan: puts (key, bytes) and deletes.
#[derive(Debug, Default, PartialEq)]
pub struct Plan {
    pub puts: Vec<(String, Vec<u8>)>,
    pub deletes: Vec<String>,
    /// What the index holds once the plan is committed.
    next: BTreeMap<String, (Owned, UnixMillis)>,
}

impl Plan {
    /// Whether there is nothing to write.
    pub fn is_empty(&self) -> bool {
        self.puts.is_empty() && self.deletes.is_empty()
    }
}

/// What this replica has written under its current lease.
#[derive(Debug, Default)]
pub struct OwnKeys {
    written: BTreeMap<String, (Owned, UnixMillis)>,
}

impl OwnKeys {
    /// Forgets everything written: a new lease starts with no keys.
    pub fn reset(&mut self) {
        self.written.clear();
    }

    /// What to write at `now` so etcd holds `desired`.
    pub fn plan(&self, desired: BTreeMap<String, Owned>, now: UnixMillis) -> Plan {
        let mut plan = Plan::default();
        for key in self.written.keys().filter(|k| !desired.contains_key(*k)) {
            plan.deletes.push(key.clone());
        }
        for (key, value) in desired {
            match self.written.get(&key) {
                Some((old, at)) if !old.needs_write(&value, *at, now) => {
                    plan.next.insert(key, (old.clone(), *at));
                }
                _ => {
                    plan.puts.push((key.clone(), value.bytes()));
                    plan.next.insert(key, (value, now));
                }
            }
        }
        plan
    }

    /// The plan was written.
    pub fn committed(&mut self, plan: Plan) {
        self.written = plan.next;
    }
}

#[cfg(test)]
mod tests {
    use skybridge_api::model::ClusterId;

    use super::*;
    use crate::store::etcd::records::{PeerSample, Role};

    fn presence(acked: u64, rtt: f64) -> Owned {
        Owned::Presence(PresenceRecord {
            since: 1,
            cloud: "aws".into(),
            region: "r".into(),
            acked_version: acked,
            nacks: 0,
            last_nack: None,
            last_report: None,
            peers: vec![PeerSample {
                to: ClusterId::new("b-1").unwrap(),
                rtt_ms: Some(rtt),
                rank_rtt_ms: None,
                state: "healthy".into(),
                transport: "quic".into(),
                transport_for_s: None,
            }],
        })
    }

    fn replica(version: u64) -> Owned {
        Owned::Replica(ReplicaRecord {
            name: "a".into(),
            role: Role::Follower,
            role_since: 0,
            catalog_version: version,
            version_since: 0,
            started_at: 0,
            gateways: 1,
            software: "x".into(),
            certificate: Default::default(),
        })
    }

    #[test]
    fn writes_what_changed_and_deletes_what_went() {
        let mut own = OwnKeys::default();
        let desired =
            |acked, rtt| BTreeMap::from([("r".to_owned(), replica(1)), ("p/gw".to_owned(), presence(acked, rtt))]);
        let plan = own.plan(desired(1, 10.0), 0);
        assert_eq!(plan.puts.len(), 2);
        own.committed(plan);
        assert!(own.plan(desired(1, 10.2), 1_000).is_empty(), "latency jitter waits");
        let plan = own.plan(desired(2, 10.2), 6_000);
        assert_eq!(plan.puts.iter().map(|(k, _)| k.as_str()).collect::<Vec<_>>(), ["p/gw"]);
        own.committed(plan);
        let plan = own.plan(BTreeMap::from([("r".to_owned(), replica(2))]), 7_000);
        assert_eq!((plan.puts.len(), plan.deletes.clone()), (1, vec!["p/gw".to_owned()]));
        own.committed(plan);
        own.reset();
        assert_eq!(
            own.plan(BTreeMap::from([("r".to_owned(), replica(2))]), 3_000).puts.len(),
            1,
            "a new lease rewrites"
        );
    }
}
