//! The merge core: source updates in, catalog versions out. `Core` is pure (updates and time
//! come in as values); `run` is the I/O shell that persists and publishes.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use skybridge_api::catalog::{GlobalCatalog, SourceId, UnixMillis};
use skybridge_api::model::ClusterId;
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::catalog::{MergeConfig, SourceInput, merge, share_endpoints};
use crate::metrics::{Metrics, SyncLabels};
use crate::sources::{SourceError, SourceUpdate, now_millis};
use crate::state::State;
use crate::store::{Persisted, Store, StoreError, StoredSource};
use skybridge_api::backoff::Backoff;

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
}

impl Core {
    /// Starts from what the store remembered, so a restart serves the last catalog even if no
    /// source answers. `kinds` names the configured sources; unknown stored ones are dropped.
    pub fn new(persisted: Persisted, kinds: &BTreeMap<SourceId, String>, cfg: MergeConfig) -> Core {
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
        Core { inputs, status, catalog: Arc::new(persisted.catalog), cfg }
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
                // A poll that found what the last one did (the common case for polled sources)
                // changes nothing the merge reads but the sync time: skip the merge. Comparing
                // is cheap, as unchanged endpoint lists are the same allocation by now.
                if let Some(input) = self.inputs.get_mut(&u.source)
                    && input.failing_since.is_none()
                    && *input.snapshot == snapshot
                {
                    input.synced_at = u.at;
                    // Failing clusters age towards their stale timeout on the merge ticks.
                    return None;
                }
                self.inputs.insert(
                    u.source,
                    SourceInput {
                        snapshot: Arc::new(snapshot),
                        synced_at: u.at,
                        failing_since: None,
                        failing_clusters,
                    },
                );
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

    /// Re-merges at `now` (stale timeouts expire with time alone). Only failing sources and
    /// clusters can expire, so with none there is nothing to do.
    pub fn on_tick(&mut self, now: UnixMillis) -> Option<Arc<GlobalCatalog>> {
        if self.inputs.values().all(|i| i.failing_since.is_none() && i.failing_clusters.is_empty()) {
            return None;
        }
        self.remerge(now)
    }

    fn remerge(&mut self, now: UnixMillis) -> Option<Arc<GlobalCatalog>> {
        let next = merge(&self.catalog, &self.inputs, now, &self.cfg);
        // Keep the new provenance times even when the version stays (they are informational).
        let moved = next.version != self.catalog.version;
        self.catalog = Arc::new(next);
        moved.then(|| self.catalog.clone())
    }
}

/// How source health differs in what the API shows beyond the sync clocks, which move with
/// every poll: only such changes (or the clocks every `STATUS_REFRESH`) are written to a
/// replicated store.
fn status_moved(a: &BTreeMap<SourceId, SourceStatus>, b: &BTreeMap<SourceId, SourceStatus>) -> bool {
    let strip = |m: &BTreeMap<SourceId, SourceStatus>| -> BTreeMap<SourceId, SourceStatus> {
        m.iter()
            .map(|(k, s)| (k.clone(), SourceStatus { last_attempt: None, last_success: None, ..s.clone() }))
            .collect()
    };
    strip(a) != strip(b)
}

/// How often unchanged source health (only its sync clocks moved) is saved for other replicas.
const STATUS_REFRESH: Duration = Duration::from_secs(10);

/// What the core's I/O shell works with.
pub struct Shell<S: Store> {
    pub store: Arc<S>,
    pub state: Arc<State>,
    pub metrics: Metrics,
    /// How often to re-merge without updates (stale expiry).
    pub tick: Duration,
    /// Publish each version to the sessions as soon as it is merged (single node). With a
    /// replicated store every replica, this one too, publishes what the store's watch shows,
    /// so that what is served is exactly what was written.
    pub publish: bool,
}

/// Runs the core until cancelled: applies updates, re-merges every `tick`, persists (and with
/// `publish`, publishes) each new version; with `repair`, merges (and writes) at once. Returns `Err(Fenced)` when the store refused a
/// write because this replica no longer leads.
pub async fn run<S: Store>(
    mut core: Core,
    mut updates: mpsc::Receiver<SourceUpdate>,
    shell: Shell<S>,
    repair: bool,
    cancel: CancellationToken,
) -> Result<(), StoreError> {
    let Shell { store, state, metrics, tick, publish } = shell;
    let (persist, pending) = watch::channel(Pending::default());
    let fenced = CancellationToken::new();
    let writer = tokio::spawn(
        persister(store, state.clone(), pending, fenced.clone(), cancel.clone())
            .instrument(tracing::info_span!("persist")),
    );
    let mut interval = tokio::time::interval(tick);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut saved_status: Option<(BTreeMap<SourceId, SourceStatus>, tokio::time::Instant)> = None;
    let mut sources_done = false;
    let mut repair = repair;
    loop {
        let changed = tokio::select! {
            _ = cancel.cancelled() => break,
            () = std::future::ready(()), if repair => {
                repair = false;
                core.merge_now(now_millis())
            }
            _ = fenced.cancelled() => break,
            u = updates.recv(), if !sources_done => match u {
                Some(u) => {
                    let source = u.source.clone();
                    let result = u.result.as_ref().map_or_else(|e| e.kind.as_str().to_owned(), |_| "ok".to_owned());
                    metrics.source_syncs.get_or_create(&SyncLabels { source: source.clone(), result: result.clone() }).inc();
                    if result == "ok" {
                        metrics
                            .source_last_success
                            .get_or_create(&SyncLabels { source: source.clone(), result })
                            .set((u.at / 1000) as i64);
                    }
                    let started = std::time::Instant::now();
                    let failed = u.result.as_ref().err().map(|e| e.to_string());
                    let first_failure = failed.is_some()
                        && core.status().get(&source).is_some_and(|s| s.consecutive_failures == 0);
                    let changed = core.on_update(u);
                    metrics.merge_seconds.observe(started.elapsed().as_secs_f64());
                    if let (Some(err), true) = (failed, first_failure) {
                        state.event("source_failed", format!("source {source} failed: {err}; serving its last good data")).await;
                    }
                    changed
                }
                // No (more) sources: the catalog stays served and ticks still expire stale
                // data; only cancellation ends the core.
                None => {
                    sources_done = true;
                    None
                }
            },
            _ = interval.tick() => core.on_tick(now_millis()),
        };
        metrics.set_sources(core.status());
        state.set_sources(core.status().clone());
        let due = saved_status.as_ref().is_none_or(|(saved, at)| {
            status_moved(saved, core.status()) || (saved != core.status() && at.elapsed() >= STATUS_REFRESH)
        });
        if due {
            saved_status = Some((core.status().clone(), tokio::time::Instant::now()));
            persist.send_modify(|p| p.status = Some(core.status().clone()));
        }
        if let Some(catalog) = changed {
            metrics.catalog_version.set(catalog.version as i64);
            metrics.catalog_services.set(catalog.services.len() as i64);
            // Persist behind: while a write runs, newer versions replace the pending one (only
            // the latest is written). On a single node the version is published first, so
            // gateways never wait for the disk; a crash loses at most the versions not yet
            // written, and digests make gateways resnapshot if the restarted federator's
            // content differs from what they hold.
            if publish {
                state.publish(catalog.clone());
            }
            persist.send_modify(|p| p.catalog = Some((catalog.clone(), core.stored_sources())));
            let msg = format!(
                "catalog version {} ({} services, {} clusters)",
                catalog.version,
                catalog.services.len(),
                catalog.clusters.len()
            );
            state.event("catalog", msg).await;
        }
    }
    // Closing the channel lets the writer finish the pending write and stop.
    drop(persist);
    let _ = writer.await;
    if fenced.is_cancelled() { Err(StoreError::Fenced) } else { Ok(()) }
}

/// The latest catalog with its inputs and the latest source health, for the writer.
#[derive(Default, Clone)]
struct Pending {
    catalog: Option<(Arc<GlobalCatalog>, BTreeMap<SourceId, StoredSource>)>,
    status: Option<BTreeMap<SourceId, SourceStatus>>,
}

/// Retry pacing of failed writes (unless a newer version comes first), and how often a write
/// that keeps failing is logged again.
const RETRY: Backoff = Backoff { min: Duration::from_secs(1), max: Duration::from_secs(30) };
const WARN_EVERY: Duration = Duration::from_secs(30);

/// Writes the latest catalog and source health, one write at a time; versions published
/// during a write are coalesced into the next. A failed write is retried (backing off) until it
/// lands or a newer one replaces it, and shown in the status meanwhile; a write refused by the
/// fence stops everything (`fenced`).
async fn persister<S: Store>(
    store: Arc<S>,
    state: Arc<State>,
    mut pending: watch::Receiver<Pending>,
    fenced: CancellationToken,
    cancel: CancellationToken,
) {
    let mut written = Written::default();
    let mut failures = 0u32;
    let mut warned: Option<tokio::time::Instant> = None;
    loop {
        if failures == 0 && pending.changed().await.is_err() {
            break;
        }
        let next = pending.borrow_and_update().clone();
        match written.write(&*store, &next).await {
            Ok(()) => {
                if failures > 0 {
                    tracing::info!(failures, "persisting the catalog works again");
                    state.set_write_error(None);
                }
                failures = 0;
                warned = None;
            }
            Err(StoreError::Fenced) => {
                tracing::warn!("the store refused a write: this replica no longer leads");
                state.set_write_error(None);
                fenced.cancel();
                return;
            }
            Err(e) => {
                failures += 1;
                if warned.is_none_or(|t| t.elapsed() >= WARN_EVERY) {
                    tracing::error!(error = %e, failures, "persisting the catalog failed; retrying");
                    warned = Some(tokio::time::Instant::now());
                }
                state.set_write_error(Some(e.to_string()));
                // Retry after a pause, or at once with whatever newer came meanwhile.
                tokio::select! {
                    _ = tokio::time::sleep(RETRY.jittered(failures, fastrand::f64())) => {}
                    changed = pending.changed() => if changed.is_err() { break },
                }
                if cancel.is_cancelled() {
                    break;
                }
            }
        }
    }
    // The sender is gone (shutdown): write what is still pending.
    let last = pending.borrow_and_update().clone();
    if let Err(e) = written.write(&*store, &last).await {
        tracing::error!(error = %e, "persisting the catalog at shutdown failed");
    }
    state.set_write_error(None);
}

/// What the writer has written, so a pending value is only written where it is new.
#[derive(Default)]
struct Written {
    version: Option<u64>,
    status: Option<BTreeMap<SourceId, SourceStatus>>,
}

impl Written {
    async fn write<S: Store>(&mut self, store: &S, p: &Pending) -> Result<(), StoreError> {
        if let Some((catalog, sources)) = &p.catalog
            && self.version != Some(catalog.version)
        {
            store.save_catalog(catalog, sources).await?;
            self.version = Some(catalog.version);
        }
        if let Some(status) = &p.status
            && self.status.as_ref() != Some(status)
        {
            store.save_source_status(status).await?;
            self.status = Some(status.clone());
        }
        Ok(())
    }
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

    #[test]
    fn updates_version_status_and_staleness() {
        let mut core = Core::new(Persisted::default(), &kinds(), CFG);
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
        let mut core = Core::new(Persisted::default(), &kinds(), CFG);
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
        let mut core = Core::new(Persisted::default(), &kinds(), CFG);
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
        let mut core = Core::new(Persisted::default(), &kinds(), CFG);
        let cat = core.on_update(SourceUpdate { source: "static".into(), at: 10, result: Ok(snap()) }).unwrap();
        // The store found rows that do not match the head: its digest matches nothing.
        let torn = GlobalCatalog { digest: 0, ..(*cat).clone() };
        let persisted = Persisted { catalog: torn, sources: core.stored_sources(), torn: true, ..Persisted::default() };
        let mut leader = Core::new(persisted, &kinds(), CFG);
        let repaired = leader.merge_now(20).expect("a new version");
        assert_eq!((repaired.version, repaired.digest), (cat.version + 1, cat.digest));
    }

    #[test]
    fn restart_serves_the_persisted_catalog() {
        let mut core = Core::new(Persisted::default(), &kinds(), CFG);
        let cat = core.on_update(SourceUpdate { source: "static".into(), at: 10, result: Ok(snap()) }).unwrap();
        let persisted = Persisted { catalog: (*cat).clone(), sources: core.stored_sources(), ..Persisted::default() };
        let mut restarted = Core::new(persisted, &kinds(), MergeConfig { stale_timeout_ms: None });
        assert_eq!(restarted.catalog().version, cat.version);
        // Its first merge, with the restored inputs and no source answering, changes nothing.
        assert!(restarted.on_tick(10_000).is_none());
        assert_eq!(restarted.catalog().digest, cat.digest);
        // A stored source that is no longer configured is dropped.
        let gone = Core::new(
            Persisted { catalog: (*cat).clone(), sources: core.stored_sources(), ..Persisted::default() },
            &BTreeMap::new(),
            CFG,
        );
        assert!(gone.inputs.is_empty());
    }
}
