//! The core's I/O shell: feeds source updates, ticks and operator confirmations to the pure
//! [`Core`], persists (and on a single node publishes) each version, and records events.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use skybridge_api::backoff::Backoff;
use skybridge_api::catalog::{GlobalCatalog, SourceId};
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use super::{Core, SourceStatus};
use crate::metrics::{Metrics, SyncLabels};
use crate::sources::{SourceUpdate, now_millis};
use crate::state::State;
use crate::store::{Store, StoreError, StoredSource};

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

/// Runs the core until cancelled: applies updates and operators' confirmations of held
/// removals (`confirms`, by source id), re-merges every `tick`, persists (and with `publish`,
/// publishes) each new version; with `repair`, merges (and writes) at once. Returns `Err(Fenced)` when the store refused a
/// write because this replica no longer leads.
pub async fn run<S: Store>(
    mut core: Core,
    mut updates: mpsc::Receiver<SourceUpdate>,
    mut confirms: mpsc::Receiver<SourceId>,
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
                    let failing_before = core.status().get(&source).map_or(0, |s| s.consecutive_failures);
                    let first_failure = failed.is_some() && failing_before == 0;
                    let recovered = failed.is_none() && failing_before > 0;
                    let changed = core.on_update(u);
                    metrics.merge_seconds.observe(started.elapsed().as_secs_f64());
                    if let (Some(err), true) = (failed, first_failure) {
                        state.event("source_failed", format!("source {source} failed: {err}; serving its last good data")).await;
                    }
                    if recovered {
                        let msg = format!("source {source} recovered after {failing_before} failed syncs");
                        state.event("source_recovered", msg).await;
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
            Some(source) = confirms.recv() => {
                let applied = core.confirm(&source, now_millis());
                if applied.is_none() {
                    tracing::info!(%source, "a removal was confirmed, but none is held (any more) for that source");
                }
                applied
            }
        };
        for (kind, message) in core.take_notes() {
            if kind == "removal_held" {
                metrics.removals_held.inc();
            }
            state.event(kind, message).await;
        }
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
            let before = state.catalog();
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
            for (kind, message) in crate::catalog::conflicts::conflict_events(&before, &catalog) {
                state.event(kind, message).await;
            }
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
