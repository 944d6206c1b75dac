//! What only the leader runs: the catalog sources, the merge core and gateway expiry. A single
//! federator (embedded store) runs it for its whole life; a replica on etcd runs it while it
//! holds the leadership, and stops it when it loses it or the store's fence refuses a write.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::Instrument;

use crate::catalog::MergeConfig;
use crate::catalog::guard::GuardConfig;
use crate::config::{Config, SourceConfig};
use crate::core::{self, Core, Shell};
use crate::expiry::{Expiry, Seen};
use crate::metrics::Metrics;
use crate::sources::static_file::{ReadLimits, StaticFile};
use crate::sources::{self, Backoff, now_millis};
use crate::state::State;
use crate::store::{AnyStore, Persisted, Store, StoreError};
use skybridge_cloud_adapters::deferred::Deferred;

/// How the leader's work ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ended {
    /// Asked to stop (shutdown, or the leadership was lost).
    Stopped,
    /// The store refused a write: another replica leads now.
    Fenced,
}

/// Everything the leader's work needs, built once from the config.
#[derive(Clone)]
pub struct Leader {
    pub cfg: Arc<Config>,
    pub store: Arc<AnyStore>,
    pub state: Arc<State>,
    pub metrics: Metrics,
    /// Publish merged versions directly (single node) or wait for the store's watch.
    pub publish: bool,
}

impl Leader {
    /// Runs sources, the merge core (starting from `persisted`) and gateway expiry until
    /// `cancel`, or until the store refuses a write.
    pub async fn run(&self, persisted: Persisted, cancel: CancellationToken) -> Ended {
        let cfg = &self.cfg;
        let f = &cfg.federator;
        let kinds: BTreeMap<String, String> =
            cfg.sources.iter().map(|s| (s.id().to_owned(), s.kind().to_owned())).collect();
        let merge_cfg = MergeConfig { stale_timeout_ms: f.stale_timeout.map(|d| d.as_millis() as u64) };
        let repair = persisted.torn;
        let guard = GuardConfig {
            max_share: f.removal_guard,
            hold_ms: u64::try_from(f.removal_hold.as_millis()).unwrap_or(u64::MAX),
        };
        let core = Core::new(persisted, &kinds, merge_cfg, guard);
        self.state.set_sources(core.status().clone());

        // The leader's tasks stop together: on shutdown, on losing the leadership, or when one
        // of them learns from the store that another replica leads.
        let stop = cancel.child_token();
        let tasks = TaskTracker::new();
        let (tx, rx) = mpsc::channel(cfg.limits.source_queue);
        for s in &cfg.sources {
            spawn_source(&tasks, s.clone(), tx.clone(), stop.clone());
        }
        drop(tx);
        let shell = Shell {
            store: self.store.clone(),
            state: self.state.clone(),
            metrics: self.metrics.clone(),
            tick: f.merge_interval,
            publish: self.publish,
        };
        // Operators' confirmations of held removals reach the core through the state while this
        // replica leads.
        let (confirm_tx, confirms) = mpsc::channel(16);
        self.state.set_confirmations(Some(confirm_tx));
        let core = tasks
            .spawn(core::run(core, rx, confirms, shell, repair, stop.clone()).instrument(tracing::info_span!("core")));
        let expiry = tasks.spawn(
            expire_gateways(
                self.store.clone(),
                self.state.clone(),
                self.metrics.clone(),
                f.gateway_expiry,
                stop.clone(),
            )
            .instrument(tracing::info_span!("gateway_expiry")),
        );
        tasks.close();
        let fenced = |r: Result<Result<(), StoreError>, _>| matches!(r, Ok(Err(StoreError::Fenced)));
        let ended = tokio::select! {
            _ = stop.cancelled() => Ended::Stopped,
            r = core => if fenced(r) { Ended::Fenced } else { Ended::Stopped },
            r = expiry => if fenced(r) { Ended::Fenced } else { Ended::Stopped },
        };
        stop.cancel();
        tasks.wait().await;
        self.state.set_confirmations(None);
        ended
    }
}

/// Starts one catalog source's task.
fn spawn_source(
    tasks: &TaskTracker,
    s: SourceConfig,
    tx: mpsc::Sender<sources::SourceUpdate>,
    cancel: CancellationToken,
) {
    let span = tracing::info_span!("source", id = s.id(), kind = s.kind());
    match s {
        SourceConfig::Static { id, path, interval, backoff_min, backoff_max, max_size, read_timeout } => {
            let backoff = Backoff { min: backoff_min, max: backoff_max };
            let file = StaticFile::new(path, interval, ReadLimits { max_size, timeout: read_timeout });
            tasks.spawn(sources::run(id, file, tx, backoff, cancel).instrument(span));
        }
        SourceConfig::AwsCloudmap(c) => {
            let backoff = Backoff { min: c.backoff_min, max: c.backoff_max };
            let id = c.id.clone();
            // Building the client reads the credential chain's files: do it in the task, not
            // before the federator is serving.
            tasks.spawn(
                async move {
                    let source = skybridge_cloud_adapters::aws::CloudMap::new(c).await;
                    sources::run(id, source, tx, backoff, cancel).await;
                }
                .instrument(span),
            );
        }
        SourceConfig::GkeFleet(c) => {
            let backoff = Backoff { min: c.backoff_min, max: c.backoff_max };
            let id = c.id.clone();
            let source = Deferred::new("gke-fleet", move || skybridge_cloud_adapters::gke::source(c.clone(), None));
            tasks.spawn(sources::run(id, source, tx, backoff, cancel).instrument(span));
        }
        SourceConfig::AksFleet(c) => {
            let backoff = Backoff { min: c.backoff_min, max: c.backoff_max };
            let id = c.id.clone();
            let source = Deferred::new("aks-fleet", move || skybridge_cloud_adapters::aks::source::source(c.clone()));
            tasks.spawn(sources::run(id, source, tx, backoff, cancel).instrument(span));
        }
        SourceConfig::Kubernetes(c) => {
            let backoff = Backoff { min: c.backoff_min, max: c.backoff_max };
            let id = c.id.clone();
            let source = Deferred::new("kubernetes", move || {
                let built = skybridge_cloud_adapters::kubernetes::source(&c);
                async move { built }
            });
            tasks.spawn(sources::run(id, source, tx, backoff, cancel).instrument(span));
        }
    }
}

/// How often expiry looks: a tenth of the expiry, within [1 s, 30 s].
fn check_interval(expiry: Duration) -> Duration {
    (expiry / 10).clamp(Duration::from_secs(1), Duration::from_secs(30))
}

/// Removes gateways connected to no replica for `expiry`, with an event each.
async fn expire_gateways(
    store: Arc<AnyStore>,
    state: Arc<State>,
    metrics: Metrics,
    expiry: Duration,
    cancel: CancellationToken,
) -> Result<(), StoreError> {
    let mut tracker = Expiry::default();
    let mut tick = tokio::time::interval(check_interval(expiry));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = cancel.cancelled() => return Ok(()),
            _ = tick.tick() => {}
        }
        let seen: Vec<Seen> = state
            .gateways()
            .into_iter()
            .map(|g| Seen {
                key: (g.record.cluster.clone(), g.record.instance.clone()),
                connected: g.connected,
                last_seen: g.record.last_seen,
            })
            .collect();
        let last_seen: std::collections::HashMap<_, _> = seen.iter().map(|s| (s.key.clone(), s.last_seen)).collect();
        for (cluster, instance) in tracker.due(&seen, now_millis(), expiry) {
            let seen_at = last_seen.get(&(cluster.clone(), instance.clone())).copied().unwrap_or_default();
            match store.delete_gateway(&cluster, &instance, seen_at).await {
                Ok(true) => {
                    metrics.gateways_expired.inc();
                    state.remove_gateway(&(cluster.clone(), instance.clone()));
                    let msg = format!(
                        "gateway {cluster}/{instance} expired: connected to no federator for {}",
                        skybridge_api::config::duration::format(expiry)
                    );
                    state.event("gateway_expired", msg).await;
                }
                Ok(false) => tracing::debug!(%cluster, %instance, "gateway reconnected before it expired"),
                Err(StoreError::Fenced) => return Err(StoreError::Fenced),
                Err(e) => {
                    tracing::warn!(error = %e, %cluster, %instance, "removing an expired gateway failed; retrying later")
                }
            }
        }
    }
}
