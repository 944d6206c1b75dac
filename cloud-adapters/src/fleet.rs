//! A catalog source over a fleet of Kubernetes clusters: a [`Discovery`] lists the member
//! clusters (GKE Hub memberships, AKS Fleet members), and each member's exports come from its
//! own [`ClusterWatch`]. Members are re-discovered every `rediscover` interval; watches start
//! for new members, stop for removed ones, and restart when a member's API server changes.

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

use crate::k8s::{ApiServer, ClusterConfig, ClusterWatch, ExportApi, SharedToken, Tuning};

/// One member cluster and how to reach its API server.
#[derive(Debug, Clone)]
pub struct Member {
    pub cluster: ClusterInfo,
    pub api: ApiServer,
}

impl Member {
    /// What, when it changes, needs a new watch (the token is refreshed in place).
    fn fingerprint(&self) -> (String, Option<String>, Option<String>) {
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

struct Watched {
    fingerprint: (String, Option<String>, Option<String>),
    info: ClusterInfo,
    watch: ClusterWatch,
    /// The member's last good part of the catalog.
    last: Option<SourceSnapshot>,
}

/// The fleet source.
pub struct Fleet<D> {
    discovery: D,
    rediscover: Duration,
    export_apis: Vec<ExportApi>,
    tuning: Tuning,
    members: BTreeMap<ClusterId, Watched>,
    next_discovery: Option<Instant>,
}

type Step<'a> = Pin<Box<dyn Future<Output = (ClusterId, Result<SourceSnapshot, SourceError>)> + Send + 'a>>;

impl<D: Discovery> Fleet<D> {
    /// A fleet source re-listing members every `rediscover`.
    pub fn new(discovery: D, rediscover: Duration, export_apis: Vec<ExportApi>, tuning: Tuning) -> Self {
        Fleet { discovery, rediscover, export_apis, tuning, members: BTreeMap::new(), next_discovery: None }
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
            tracing::info!(cluster = %m.cluster.id, "watching a fleet member");
            self.members.insert(m.cluster.id.clone(), Watched { fingerprint: fp, info: m.cluster, watch, last: None });
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
}

impl<D: Discovery> CatalogSource for Fleet<D> {
    fn kind(&self) -> &'static str {
        self.discovery.kind()
    }

    async fn next(&mut self) -> Result<SourceSnapshot, SourceError> {
        loop {
            let due = self.next_discovery.is_none_or(|at| at <= Instant::now());
            if due {
                // A failed discovery stays due: the runner backs off, calls `next` again, and
                // discovery is retried then rather than a whole `rediscover` later.
                let changed = self.reconcile().await?;
                self.next_discovery = Some(Instant::now() + self.rediscover);
                if changed {
                    return Ok(self.combined());
                }
            }
            let wake = self.next_discovery.unwrap_or_else(Instant::now);
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
            let Some(w) = self.members.get_mut(&id) else { continue };
            match result {
                Ok(s) => {
                    w.last = Some(s);
                    return Ok(self.combined());
                }
                // The federator keeps the fleet's last good data, marked stale, until a member
                // recovers and the next snapshot clears it.
                Err(e) => return Err(SourceError::new(e.kind, format!("cluster {id}: {}", e.message))),
            }
        }
    }
}

/// Keeps a [`SharedToken`] fresh from an async token source (cloud credentials), so that the
/// per-request token lookup stays a cheap read. The first token is fetched before returning;
/// the refresher stops when the returned handle is dropped.
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
