//! The merge core: source updates in, catalog versions out. `Core` is pure (updates and time
//! come in as values); `run` is the I/O shell that persists and publishes.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use skybridge_api::catalog::{GlobalCatalog, SourceId, UnixMillis};
use skybridge_api::model::ClusterId;

use crate::catalog::guard::{Guard, GuardConfig, HeldRemoval, Verdict};
use crate::catalog::{MergeConfig, SourceInput, merge, share_endpoints};
use crate::sources::{SourceError, SourceUpdate};
use crate::store::{Persisted, StoredSource};

/// A source's health as the API shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct SourceStatus {
    pub kind: String,
    pub last_success: Option<UnixMillis>,
    pub last_attempt: Option<UnixMillis>,
    pub consecutive_failures: u32,
    pub total_failures: u64,
    pub last_error: Option<String>,
    pub last_error_kind: Option<String>,
    /// Set while failing: the source's last good data is served stale since then.
    pub stale_since: Option<UnixMillis>,
    pub services: usize,
    /// Clusters of a fleet source that fail while the rest syncs.
    pub failing_clusters: BTreeMap<ClusterId, ClusterFailure>,
    /// The source's last answer would remove most of its services: held (the previous data
    /// is served) until it stands long enough or an operator confirms it.
    #[serde(default)]
    pub held_removal: Option<HeldRemoval>,
}

/// One failing cluster of a multi-cluster source.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClusterFailure {
    /// When the federator first saw it failing; its last good exports are stale since then.
    pub since: UnixMillis,
    pub kind: String,
    pub error: String,
}

/// Merge state: each source's last good snapshot and the current catalog.
#[derive(Debug, Clone)]
pub struct Core {
    inputs: BTreeMap<SourceId, SourceInput>,
    status: BTreeMap<SourceId, SourceStatus>,
    catalog: Arc<GlobalCatalog>,
    cfg: MergeConfig,
    guard: GuardConfig,
    guards: BTreeMap<SourceId, Guard>,
    /// Events to record (kind, message), taken by the shell after each call.
    notes: Vec<(&'static str, String)>,
}

impl Core {
    /// Starts from what the store remembered, so a restart serves the last catalog even if no
    /// source answers. `kinds` names the configured sources; unknown stored ones are dropped.
    pub fn new(persisted: Persisted, kinds: &BTreeMap<SourceId, String>, cfg: MergeConfig, guard: GuardConfig) -> Core {
        let inputs: BTreeMap<_, _> = persisted
            .sources
            .into_iter()
            .filter(|(id, _)| kinds.contains_key(id))
            .map(|(id, s)| {
                let input = SourceInput {
                    snapshot: s.snapshot,
                    synced_at: s.synced_at,
                    failing_since: s.failing_since,
                    failing_clusters: BTreeMap::new(),
                };
                (id, input)
            })
            .collect();
        let status = kinds
            .iter()
            .map(|(id, kind)| {
                let input = inputs.get(id);
                let st = SourceStatus {
                    kind: kind.clone(),
                    last_success: input.map(|i| i.synced_at),
                    stale_since: input.and_then(|i| i.failing_since),
                    services: input.map_or(0, |i| i.snapshot.services.len()),
                    ..SourceStatus::default()
                };
                (id.clone(), st)
            })
            .collect();
        Core {
            inputs,
            status,
            catalog: Arc::new(persisted.catalog),
            cfg,
            guard,
            guards: BTreeMap::new(),
            notes: Vec::new(),
        }
    }

    /// Events since the last call: (kind, message).
    pub fn take_notes(&mut self) -> Vec<(&'static str, String)> {
        std::mem::take(&mut self.notes)
    }

    /// The current catalog.
    pub fn catalog(&self) -> &Arc<GlobalCatalog> {
        &self.catalog
    }

    /// Source health for the API.
    pub fn status(&self) -> &BTreeMap<SourceId, SourceStatus> {
        &self.status
    }

    /// The inputs as the store keeps them.
    pub fn stored_sources(&self) -> BTreeMap<SourceId, StoredSource> {
        self.inputs
            .iter()
            .map(|(id, i)| {
                (
                    id.clone(),
                    StoredSource {
                        snapshot: i.snapshot.clone(),
                        synced_at: i.synced_at,
                        failing_since: i.failing_since,
                    },
                )
            })
            .collect()
    }

    /// Applies one sync outcome; returns the new catalog when its version moved.
    pub fn on_update(&mut self, u: SourceUpdate) -> Option<Arc<GlobalCatalog>> {
        let st = self.status.entry(u.source.clone()).or_default();
        st.last_attempt = Some(u.at);
        match u.result {
            Ok(mut snapshot) => {
                share_endpoints(self.inputs.get(&u.source).map(|i| &*i.snapshot), &mut snapshot);
                st.last_success = Some(u.at);
                st.consecutive_failures = 0;
                st.stale_since = None;
                st.services = snapshot.services.len();
                // A failing cluster keeps the time it was first seen failing.
                st.failing_clusters = snapshot
                    .failing
                    .iter()
                    .map(|(c, e)| {
                        let since = st.failing_clusters.get(c).map_or(u.at, |f| f.since);
                        let f = ClusterFailure { since, kind: e.kind.as_str().to_owned(), error: e.message.clone() };
                        (c.clone(), f)
                    })
                    .collect();
                let failing_clusters: BTreeMap<ClusterId, UnixMillis> =
                    st.failing_clusters.iter().map(|(c, f)| (c.clone(), f.since)).collect();
                let snapshot = Arc::new(snapshot);
                let previous = self.inputs.get(&u.source).map(|i| &*i.snapshot);
                let guard = self.guards.entry(u.source.clone()).or_default();
                match guard.judge(previous, &snapshot, u.at, &self.guard) {
                    Verdict::Hold { held, first } => {
                        if first {
                            self.notes.push(("removal_held", held_message(&u.source, &held)));
                        }
                        st.held_removal = Some(held);
                        return None;
                    }
                    Verdict::Apply => {
                        if let Some(h) = st.held_removal.take() {
                            let why = if snapshot.services.len() + h.removed == h.of {
                                format!("it stood for {} s", (u.at.saturating_sub(h.since)) / 1000)
                            } else {
                                "a later answer replaced it".to_owned()
                            };
                            self.notes.push((
                                "removal_released",
                                format!("source {}: held removal released: {why}", u.source),
                            ));
                        }
                    }
                }
                // A poll that found what the last one did (the common case for polled sources)
                // changes nothing the merge reads but the sync time: skip the merge. Comparing
                // is cheap, as unchanged endpoint lists are the same allocation by now.
                if let Some(input) = self.inputs.get_mut(&u.source)
                    && input.failing_since.is_none()
                    && *input.snapshot == *snapshot
                {
                    input.synced_at = u.at;
                    // Failing clusters age towards their stale timeout on the merge ticks.
                    return None;
                }
                self.inputs
                    .insert(u.source, SourceInput { snapshot, synced_at: u.at, failing_since: None, failing_clusters });
            }
            Err(SourceError { kind, message }) => {
                st.consecutive_failures += 1;
                st.total_failures += 1;
                st.last_error = Some(message);
                st.last_error_kind = Some(kind.as_str().to_owned());
                // A source that never synced has nothing to keep; one that did keeps it, stale.
                if let Some(input) = self.inputs.get_mut(&u.source) {
                    let since = *input.failing_since.get_or_insert(u.at);
                    st.stale_since = Some(since);
                }
            }
        }
        self.remerge(u.at)
    }

    /// Merges now whatever changed (a torn catalog read from the store must be rewritten).
    pub fn merge_now(&mut self, now: UnixMillis) -> Option<Arc<GlobalCatalog>> {
        self.remerge(now)
    }

    /// Re-merges at `now` (stale timeouts expire with time alone, and held removals that have
    /// stood long enough apply). With nothing failing and nothing held there is nothing to do.
    pub fn on_tick(&mut self, now: UnixMillis) -> Option<Arc<GlobalCatalog>> {
        let released = self.release(now, None);
        if !released && self.inputs.values().all(|i| i.failing_since.is_none() && i.failing_clusters.is_empty()) {
            return None;
        }
        self.remerge(now)
    }

    /// An operator confirmed `source`'s held removal at `now`: it applies at once. Returns the
    /// new catalog, or None when nothing was held (or nothing changed).
    pub fn confirm(&mut self, source: &str, now: UnixMillis) -> Option<Arc<GlobalCatalog>> {
        if self.release(now, Some(source)) { self.remerge(now) } else { None }
    }

    /// Applies held answers that are due (or `confirmed`'s at once); true when any applied.
    fn release(&mut self, now: UnixMillis, confirmed: Option<&str>) -> bool {
        let mut any = false;
        for (id, guard) in &mut self.guards {
            let Some(snapshot) = guard.release(now, confirmed == Some(id.as_str())) else { continue };
            let why = if confirmed.is_some() { "confirmed by an operator" } else { "it stood for the hold time" };
            self.notes.push((
                "removal_applied",
                format!("source {id}: removal of {} services applied: {why}", {
                    self.status.get(id).and_then(|s| s.held_removal.as_ref()).map_or(0, |h| h.removed)
                }),
            ));
            if let Some(st) = self.status.get_mut(id) {
                st.held_removal = None;
                st.services = snapshot.services.len();
            }
            let failing_clusters = self.inputs.get(id).map(|i| i.failing_clusters.clone()).unwrap_or_default();
            self.inputs
                .insert(id.clone(), SourceInput { snapshot, synced_at: now, failing_since: None, failing_clusters });
            any = true;
        }
        any
    }

    fn remerge(&mut self, now: UnixMillis) -> Option<Arc<GlobalCatalog>> {
        let next = merge(&self.catalog, &self.inputs, now, &self.cfg);
        // Keep the new provenance times even when the version stays (they are informational).
        let moved = next.version != self.catalog.version;
        self.catalog = Arc::new(next);
        moved.then(|| self.catalog.clone())
    }
}

mod run;

pub use run::{Shell, run};

/// The event text for a held removal.
fn held_message(source: &str, h: &HeldRemoval) -> String {
    format!(
        "source {source}'s last answer would remove {} of its {} services: held, the previous data stays served until \
         the same answer stands for {} s or an operator confirms it (skybridge confirm-removal {source})",
        h.removed,
        h.of,
        h.applies_at.saturating_sub(h.since) / 1000
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sources::ErrorKind;
    use skybridge_api::catalog::SourceSnapshot;

    fn kinds() -> BTreeMap<SourceId, String> {
        BTreeMap::from([("static".to_owned(), "static".to_owned())])
    }

    fn snap() -> SourceSnapshot {
        crate::sources::static_file::parse(
            "[[clusters]]\nid = \"a-1\"\ncloud = \"aws\"\nregion = \"r\"\n[[services]]\nnamespace = \"p\"\nname = \"w\"\n\
             [[services.exports]]\ncluster = \"a-1\"\n[[services.exports.ports]]\nport = 80\nprotocol = \"http\"\n",
        )
        .unwrap()
    }

    const CFG: MergeConfig = MergeConfig { stale_timeout_ms: Some(1_000) };
    const GUARD: GuardConfig = GuardConfig { max_share: 0.5, hold_ms: 60_000 };

    #[test]
    fn updates_version_status_and_staleness() {
        let mut core = Core::new(Persisted::default(), &kinds(), CFG, GUARD);
        let v1 = core.on_update(SourceUpdate { source: "static".into(), at: 10, result: Ok(snap()) }).unwrap();
        assert_eq!(v1.version, 1);
        assert!(core.on_update(SourceUpdate { source: "static".into(), at: 20, result: Ok(snap()) }).is_none());
        let err = SourceError::new(ErrorKind::Unavailable, "down");
        let v2 = core.on_update(SourceUpdate { source: "static".into(), at: 30, result: Err(err.clone()) }).unwrap();
        assert_eq!(v2.version, 2, "stale marking is a change");
        let st = &core.status()["static"];
        assert_eq!((st.consecutive_failures, st.stale_since, st.last_success), (1, Some(30), Some(20)));
        assert!(core.on_update(SourceUpdate { source: "static".into(), at: 40, result: Err(err) }).is_none());
        assert_eq!(core.status()["static"].stale_since, Some(30), "stale since the first failure");
        // Expiry comes with time alone.
        let v3 = core.on_tick(20 + 1_001).unwrap();
        assert!(v3.services.is_empty());
    }

    #[test]
    fn a_failing_fleet_member_is_stamped_once_shown_and_cleared() {
        let mut core = Core::new(Persisted::default(), &kinds(), CFG, GUARD);
        core.on_update(SourceUpdate { source: "static".into(), at: 10, result: Ok(snap()) }).unwrap();
        let mut degraded = snap();
        let member = ClusterId::new("a-1").unwrap();
        degraded.failing.insert(member.clone(), SourceError::new(ErrorKind::Auth, "token rejected"));
        let v2 =
            core.on_update(SourceUpdate { source: "static".into(), at: 20, result: Ok(degraded.clone()) }).unwrap();
        let provenance = |c: &GlobalCatalog| c.services.values().next().unwrap().clusters[&member].provenance.clone();
        assert_eq!(provenance(&v2).stale_since, Some(20));
        let st = &core.status()["static"];
        assert_eq!((st.failing_clusters[&member].since, st.failing_clusters[&member].kind.as_str()), (20, "auth"));
        assert_eq!((st.consecutive_failures, st.stale_since), (0, None), "the source itself syncs");
        // Still failing later: the first failure's time is kept, so nothing changes...
        assert!(
            core.on_update(SourceUpdate { source: "static".into(), at: 500, result: Ok(degraded.clone()) }).is_none()
        );
        assert_eq!(core.status()["static"].failing_clusters[&member].since, 20);
        // ...until its stale timeout passes, which the merge tick notices.
        let expired = core.on_tick(20 + 1_001).unwrap();
        assert!(expired.services.is_empty());
        // Recovery brings the exports back, fresh.
        let back = core.on_update(SourceUpdate { source: "static".into(), at: 1_100, result: Ok(snap()) }).unwrap();
        assert_eq!(provenance(&back).stale_since, None);
        assert!(core.status()["static"].failing_clusters.is_empty());
    }

    #[test]
    fn an_unchanged_poll_skips_the_merge_but_a_recovery_does_not() {
        let mut core = Core::new(Persisted::default(), &kinds(), CFG, GUARD);
        let v1 = core.on_update(SourceUpdate { source: "static".into(), at: 10, result: Ok(snap()) }).unwrap();
        assert!(core.on_update(SourceUpdate { source: "static".into(), at: 20, result: Ok(snap()) }).is_none());
        assert!(Arc::ptr_eq(core.catalog(), &v1), "no merge ran");
        assert_eq!(core.stored_sources()["static"].synced_at, 20, "the sync time still moves");
        assert!(core.on_tick(30).is_none(), "nothing is failing: ticks are free");

        let err = SourceError::new(ErrorKind::Unavailable, "down");
        let stale = core.on_update(SourceUpdate { source: "static".into(), at: 40, result: Err(err) }).unwrap();
        let fresh = core.on_update(SourceUpdate { source: "static".into(), at: 50, result: Ok(snap()) }).unwrap();
        assert_eq!((stale.version, fresh.version), (2, 3), "the same data, no longer stale, is a change");
        assert_eq!(core.status()["static"].stale_since, None);
    }

    #[test]
    fn a_torn_catalog_is_rewritten_whatever_the_sources_say() {
        let mut core = Core::new(Persisted::default(), &kinds(), CFG, GUARD);
        let cat = core.on_update(SourceUpdate { source: "static".into(), at: 10, result: Ok(snap()) }).unwrap();
        // The store found rows that do not match the head: its digest matches nothing.
        let torn = GlobalCatalog { digest: 0, ..(*cat).clone() };
        let persisted = Persisted { catalog: torn, sources: core.stored_sources(), torn: true, ..Persisted::default() };
        let mut leader = Core::new(persisted, &kinds(), CFG, GUARD);
        let repaired = leader.merge_now(20).expect("a new version");
        assert_eq!((repaired.version, repaired.digest), (cat.version + 1, cat.digest));
    }

    #[test]
    fn restart_serves_the_persisted_catalog() {
        let mut core = Core::new(Persisted::default(), &kinds(), CFG, GUARD);
        let cat = core.on_update(SourceUpdate { source: "static".into(), at: 10, result: Ok(snap()) }).unwrap();
        let persisted = Persisted { catalog: (*cat).clone(), sources: core.stored_sources(), ..Persisted::default() };
        let mut restarted = Core::new(persisted, &kinds(), MergeConfig { stale_timeout_ms: None }, GUARD);
        assert_eq!(restarted.catalog().version, cat.version);
        // Its first merge, with the restored inputs and no source answering, changes nothing.
        assert!(restarted.on_tick(10_000).is_none());
        assert_eq!(restarted.catalog().digest, cat.digest);
        // A stored source that is no longer configured is dropped.
        let gone = Core::new(
            Persisted { catalog: (*cat).clone(), sources: core.stored_sources(), ..Persisted::default() },
            &BTreeMap::new(),
            CFG,
            GUARD,
        );
        assert!(gone.inputs.is_empty());
    }

    #[test]
    fn an_emptied_source_is_held_until_it_stands_or_is_confirmed() {
        let mut core = Core::new(Persisted::default(), &kinds(), CFG, GUARD);
        let v1 = core.on_update(SourceUpdate { source: "static".into(), at: 10, result: Ok(snap()) }).unwrap();
        // The file is emptied: nothing changes, the status and an event say why.
        let empty = SourceSnapshot { clusters: snap().clusters, ..SourceSnapshot::default() };
        assert!(core.on_update(SourceUpdate { source: "static".into(), at: 20, result: Ok(empty.clone()) }).is_none());
        assert!(Arc::ptr_eq(core.catalog(), &v1));
        let held = core.status()["static"].held_removal.clone().unwrap();
        assert_eq!((held.removed, held.of, held.applies_at), (1, 1, 60_020));
        let notes = core.take_notes();
        assert!(notes[0].0 == "removal_held" && notes[0].1.contains("remove 1 of its 1"), "{notes:?}");
        // Ticks before the hold time change nothing; the one after applies it.
        assert!(core.on_tick(60_019).is_none());
        let v2 = core.on_tick(60_020).expect("applied");
        assert!(v2.services.is_empty());
        assert!(core.status()["static"].held_removal.is_none());
        assert_eq!(core.take_notes()[0].0, "removal_applied");

        // Held again, and confirmed by an operator: applied at once.
        let mut core = Core::new(Persisted::default(), &kinds(), CFG, GUARD);
        core.on_update(SourceUpdate { source: "static".into(), at: 10, result: Ok(snap()) }).unwrap();
        core.on_update(SourceUpdate { source: "static".into(), at: 20, result: Ok(empty) });
        assert!(core.confirm("other", 30).is_none(), "nothing held there");
        assert!(core.confirm("static", 30).unwrap().services.is_empty());
        assert!(core.confirm("static", 31).is_none(), "nothing left to confirm");
    }
}
