//! A catalog source over a fleet of Kubernetes clusters: a [`Discovery`] lists the member
//! clusters (GKE Hub memberships, AKS Fleet members), and each member's exports come from its
//! own [`ClusterWatch`]. Members are re-discovered every `rediscover` interval; watches start
//! for new members, stop for removed ones, and restart when a member's API server changes.
//!
//! A failing member keeps its last good exports in the snapshot and is listed in
//! `SourceSnapshot::failing`; only when every member fails (or discovery does) is the outcome
//! an error. New members hold back publishing until they report or `Tuning::initial_sync`
//! passes, so a restart does not publish an empty snapshot over the persisted one.

use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use skybridge_api::catalog::{ClusterInfo, SourceSnapshot};
use skybridge_api::model::ClusterId;
use skybridge_api::source::{CatalogSource, ErrorKind, SourceError};
use tokio::time::Instant;
use tracing::Instrument as _;

use crate::k8s::{ApiServer, ClusterConfig, ClusterWatch, ExportApi, SharedToken, Tuning, precedence};

/// One member cluster and how to reach its API server.
#[derive(Debug, Clone)]
pub struct Member {
    pub cluster: ClusterInfo,
    pub api: ApiServer,
}

impl Member {
    /// What, when it changes, needs a new watch (the token is refreshed in place).
    fn fingerprint(&self) -> Fingerprint {
        (self.api.url.clone(), self.api.ca_pem.clone(), self.api.tls_server_name.clone())
    }
}

/// Lists a fleet's member clusters.
pub trait Discovery: Send + 'static {
    /// The source type, for logs (`gke-fleet`, `aks-fleet`).
    fn kind(&self) -> &'static str;
    /// The current members.
    fn discover(&mut self) -> impl Future<Output = Result<Vec<Member>, SourceError>> + Send;
}

/// Member errors spelled out in an "every member is failing" error.
const MAX_DETAILED: usize = 3;

type Fingerprint = (String, Option<String>, Option<String>);

struct Watched {
    fingerprint: Fingerprint,
    info: ClusterInfo,
    watch: ClusterWatch,
    /// The member's last good part of the catalog, kept (and published) while it fails.
    last: Option<SourceSnapshot>,
    /// Why the member is failing now, if it is.
    error: Option<SourceError>,
    /// The member has produced an outcome since it joined: until then it holds back publishing
    /// (for at most `Tuning::initial_sync`).
    reported: bool,
}

/// The fleet source.
pub struct Fleet<D> {
    discovery: D,
    rediscover: Duration,
    export_apis: Vec<ExportApi>,
    tuning: Tuning,
    members: BTreeMap<ClusterId, Watched>,
    next_discovery: Option<Instant>,
    /// Members that have not reported yet hold back publishing until then.
    initial_until: Option<Instant>,
    /// Something changed since `next` last returned (starts true: nothing returned yet).
    dirty: bool,
    /// When `next` last returned, and whether with a snapshot: heartbeats only while healthy.
    returned: Option<(Instant, bool)>,
}

type Step<'a> = Pin<Box<dyn Future<Output = (ClusterId, Result<SourceSnapshot, SourceError>)> + Send + 'a>>;

impl<D: Discovery> Fleet<D> {
    /// A fleet source re-listing members every `rediscover`.
    pub fn new(discovery: D, rediscover: Duration, export_apis: Vec<ExportApi>, tuning: Tuning) -> Self {
        Fleet {
            discovery,
            rediscover,
            export_apis,
            tuning,
            members: BTreeMap::new(),
            next_discovery: None,
            initial_until: None,
            dirty: true,
            returned: None,
        }
    }

    /// Re-lists members and reconciles the watches; true when the set of members changed.
    async fn reconcile(&mut self) -> Result<bool, SourceError> {
        let found = self.discovery.discover().await?;
        let mut changed = false;
        let ids: Vec<ClusterId> = found.iter().map(|m| m.cluster.id.clone()).collect();
        let before = self.members.len();
        self.members.retain(|id, _| ids.contains(id));
        changed |= self.members.len() != before;
        for m in found {
            let fp = m.fingerprint();
            if self.members.get(&m.cluster.id).is_some_and(|w| w.fingerprint == fp && w.info == m.cluster) {
                continue;
            }
            let mut cfg = ClusterConfig::new(m.cluster.clone(), m.api);
            cfg.export_apis = self.export_apis.clone();
            cfg.tuning = self.tuning.clone();
            let watch = ClusterWatch::new(cfg).map_err(|e| {
                SourceError::new(
                    ErrorKind::Malformed,
                    format!("cluster {}: cannot set up its API client: {e}", m.cluster.id),
                )
            })?;
            // A moved API server (new URL or CA) is the same cluster: its last good exports
            // stay until the new watch reports, rather than vanishing for a sync.
            let (last, error, reported) = match self.members.remove(&m.cluster.id) {
                Some(old) => (old.last, old.error, old.reported),
                None => (None, None, false),
            };
            if !reported {
                self.initial_until = Some(Instant::now() + self.tuning.initial_sync);
            }
            tracing::info!(cluster = %m.cluster.id, "watching a fleet member");
            let w = Watched { fingerprint: fp, info: m.cluster, watch, last, error, reported };
            self.members.insert(w.info.id.clone(), w);
            changed = true;
        }
        Ok(changed)
    }

    /// Every member's last good part, as one snapshot.
    fn combined(&self) -> SourceSnapshot {
        let mut out =
            SourceSnapshot { clusters: self.members.values().map(|w| w.info.clone()).collect(), ..Default::default() };
        for w in self.members.values() {
            for (key, exports) in w.last.iter().flat_map(|s| &s.services) {
                out.services.entry(key.clone()).or_default().extend(exports.iter().cloned());
            }
        }
        out
    }

    /// The fleet's current outcome: the combined snapshot with the failing members listed, or
    /// an error when no member is syncing (then the federator keeps the whole source stale).
    fn outcome(&self) -> Result<SourceSnapshot, SourceError> {
        let mut failing = BTreeMap::new();
        for (id, w) in &self.members {
            if let Some(e) = &w.error {
                failing.insert(id.clone(), e.clone());
            } else if !w.reported {
                let message = format!(
                    "its API server gave no first sync within {:?} (initial_sync); check that it is reachable",
                    self.tuning.initial_sync
                );
                failing.insert(id.clone(), SourceError::new(ErrorKind::Unavailable, message));
            }
        }
        if !self.members.is_empty() && failing.len() == self.members.len() {
            let kind =
                failing.values().map(|e| e.kind).min_by_key(|k| precedence(*k)).unwrap_or(ErrorKind::Unavailable);
            // A few examples name the fix; all of a large fleet's would bury it.
            let mut detail: Vec<String> =
                failing.iter().take(MAX_DETAILED).map(|(id, e)| format!("cluster {id}: {e}")).collect();
            if failing.len() > MAX_DETAILED {
                detail.push(format!("and {} more", failing.len() - MAX_DETAILED));
            }
            return Err(SourceError::new(kind, format!("every member cluster is failing: {}", detail.join("; "))));
        }
        Ok(SourceSnapshot { failing, ..self.combined() })
    }

    /// Records what `next` returns, for the heartbeat.
    fn returning(&mut self, outcome: Result<SourceSnapshot, SourceError>) -> Result<SourceSnapshot, SourceError> {
        self.returned = Some((Instant::now(), outcome.is_ok()));
        outcome
    }

    /// Folds a member's outcome in; true when it changes what the fleet publishes.
    fn absorb(&mut self, id: &ClusterId, result: Result<SourceSnapshot, SourceError>) -> bool {
        let Some(w) = self.members.get_mut(id) else { return false };
        let first = !w.reported;
        w.reported = true;
        match result {
            Ok(s) => {
                // Member heartbeats repeat an unchanged snapshot; they change nothing here.
                let same = w.error.is_none() && w.last.as_ref() == Some(&s);
                w.error = None;
                w.last = Some(s);
                first || !same
            }
            Err(e) => {
                tracing::debug!(cluster = %id, error = %e, "fleet member failing; keeping its last good exports");
                let same = w.error.as_ref() == Some(&e);
                w.error = Some(e);
                first || !same
            }
        }
    }
}

impl<D: Discovery> CatalogSource for Fleet<D> {
    fn kind(&self) -> &'static str {
        self.discovery.kind()
    }

    async fn next(&mut self) -> Result<SourceSnapshot, SourceError> {
        loop {
            if self.next_discovery.is_none_or(|at| at <= Instant::now()) {
                match self.reconcile().await {
                    Ok(changed) => self.dirty |= changed,
                    // A failed discovery stays due: the runner backs off, calls `next` again,
                    // and discovery is retried then rather than a whole `rediscover` later.
                    // The next good one publishes again, changed or not.
                    Err(e) => {
                        self.dirty = true;
                        return self.returning(Err(e));
                    }
                }
                self.next_discovery = Some(Instant::now() + self.rediscover);
            }
            let now = Instant::now();
            let waiting =
                self.members.values().any(|w| !w.reported) && self.initial_until.is_some_and(|until| now < until);
            let beat = match self.returned {
                Some((at, true)) if !waiting => Some(at + self.tuning.heartbeat),
                _ => None,
            };
            if !waiting && (self.dirty || beat.is_some_and(|b| b <= now)) {
                self.dirty = false;
                let outcome = self.outcome();
                return self.returning(outcome);
            }
            let mut wake = self.next_discovery.unwrap_or(now);
            if waiting && let Some(until) = self.initial_until {
                wake = wake.min(until);
            }
            if let Some(b) = beat {
                wake = wake.min(b);
            }
            let steps: Vec<Step<'_>> = self
                .members
                .iter_mut()
                .map(|(id, w)| {
                    let id = id.clone();
                    Box::pin(async move { (id, w.watch.next().await) }) as Step<'_>
                })
                .collect();
            // Every `ClusterWatch::next` is cancel-safe, so dropping the others loses nothing.
            let step = async {
                if steps.is_empty() { std::future::pending().await } else { futures::future::select_all(steps).await.0 }
            };
            let (id, result) = tokio::select! {
                s = step => s,
                _ = tokio::time::sleep_until(wake) => continue,
            };
            self.dirty |= self.absorb(&id, result);
        }
    }
}

/// Keeps a [`SharedToken`] fresh from an async token source (cloud credentials), so that the
/// per-request token lookup stays a cheap read. The first token is fetched before returning;
/// the refresher stops when the returned handle is dropped. `fetch` bounds its own duration
/// (GKE: `token_timeout`) so that its error can name what to check.
pub async fn refresh_token<F, Fut>(every: Duration, fetch: F) -> Result<(SharedToken, RefreshHandle), SourceError>
where
    F: Fn() -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<String, SourceError>> + Send,
{
    let token = SharedToken::new(fetch().await?);
    let shared = token.clone();
    let fetch = Arc::new(fetch);
    let task = tokio::spawn(
        async move {
            loop {
                tokio::time::sleep(every).await;
                match fetch().await {
                    Ok(t) => shared.set(t),
                    // Keep the old token: it may still be valid, and requests report auth failures.
                    Err(e) => tracing::warn!(error = %e, "refreshing the cluster API token failed"),
                }
            }
        }
        .instrument(tracing::info_span!("token_refresh")),
    );
    Ok((token, RefreshHandle(task)))
}

/// Stops the token refresher when dropped.
#[derive(Debug)]
pub struct RefreshHandle(tokio::task::JoinHandle<()>);

impl Drop for RefreshHandle {
    fn drop(&mut self) {
        self.0.abort();
    }
}

#[cfg(all(test, feature = "testing"))]
mod tests;
