//! One resource type's list/watch loop, as the Kubernetes API concepts describe it: a paged
//! consistent list (`limit` + `continue`), then a watch from the list's resourceVersion with
//! bookmarks, resumed from the last seen version when the stream ends, and a fresh list when
//! the server says the version is too old (410 Gone). It reports what it sees to the runner
//! and backs off on failures; it never stops on its own.
//!
//! kube's `runtime::watcher` does most of this too, but it resumes a watch silently after a
//! failure, so a consumer cannot tell that a 401 or a 503 is over until some object changes.
//! Here a successful watch start is reported, which is what clears a source's error.

use std::fmt::Debug;
use std::future::Future;

use futures::StreamExt;
use kube::api::{Api, ListParams, WatchEvent, WatchParams};
use kube::core::Resource;
use serde::de::DeserializeOwned;
use skybridge_api::source::{ErrorKind, SourceError};
use tokio::sync::mpsc;

use super::Tuning;
use super::client::WATCH_IDLE_MARGIN;
use super::convert::{ExportRec, ObjKey, ServiceRec, Skip, SliceRec, obj_key};
use super::error::{self, Failure};

/// A watch that ends sooner than this without events is resumed only after a pause.
const QUICK_END: std::time::Duration = std::time::Duration::from_secs(1);

/// Which table a message is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) enum ResId {
    /// ServiceExports of the n-th configured API group.
    Export(usize),
    Services,
    Slices,
}

/// A converted object.
#[derive(Debug, Clone)]
pub(crate) enum Item {
    Export(ExportRec),
    Service(ServiceRec),
    Slice(SliceRec),
}

/// What a loop saw.
#[derive(Debug)]
pub(crate) enum Event {
    /// A list starts; earlier list pages are void.
    Begin,
    /// One page of the list.
    Page(Vec<(ObjKey, Item)>),
    /// The list is complete.
    Listed,
    Apply(ObjKey, Item),
    Delete(ObjKey),
    /// A request succeeded after failures.
    Healthy,
    Error(SourceError),
    /// The resource type is not served (an optional ServiceExport group).
    Absent,
}

/// A report from one loop.
#[derive(Debug)]
pub(crate) struct Msg {
    pub res: ResId,
    /// Which incarnation of the loop sent it: a restarted loop's stale messages are ignored.
    pub generation: u64,
    pub event: Event,
}

/// Converts one object; `Err` leaves it out.
pub(crate) type Convert<K> = fn(&K) -> Result<(ObjKey, Item), Skip>;

/// Everything one loop needs.
pub(crate) struct Spec<K: Resource> {
    pub api: Api<K>,
    pub res: ResId,
    pub generation: u64,
    /// Names the resource in messages: `serviceexports.net.gke.io/v1`.
    pub what: String,
    /// Names the server in messages.
    pub server: String,
    /// A 404 means "none of these" rather than an error (ServiceExport CRDs).
    pub optional: bool,
    pub convert: Convert<K>,
    pub tuning: Tuning,
    pub tx: mpsc::Sender<Msg>,
}

/// How a watch ended.
enum WatchEnd {
    /// Resume from the last version (server-side timeout, or a failure already reported).
    Resume,
    /// The version is too old or the type went away: list again.
    Relist,
}

/// The runner went away: stop.
struct Closed;

impl<K> Spec<K>
where
    K: Resource + Clone + DeserializeOwned + Debug + Send + 'static,
{
    /// Runs until the runner drops its receiver (or the task is aborted).
    pub(super) async fn run(self) {
        let _ = self.run_inner().await;
    }

    async fn run_inner(&self) -> Result<(), Closed> {
        let mut failures = 0u32;
        loop {
            let mut rv = match self.list().await? {
                Ok(rv) => {
                    failures = 0;
                    rv
                }
                Err(Failure::Gone) => {
                    // The continue token expired mid-list: start over, as the API asks.
                    tracing::info!(what = %self.what, "list continue token expired; listing again");
                    // Paced, in case a server answers every list with 410.
                    tokio::time::sleep(self.tuning.backoff.min).await;
                    continue;
                }
                Err(Failure::NotServed(e)) if self.optional => {
                    self.send(Event::Absent).await?;
                    tracing::debug!(what = %self.what, error = %e.message, "not served; checking again later");
                    tokio::time::sleep(self.tuning.absent_recheck).await;
                    continue;
                }
                Err(Failure::NotServed(e) | Failure::Other(e)) => {
                    failures += 1;
                    self.fail(e, failures).await?;
                    continue;
                }
            };
            while let WatchEnd::Resume = self.watch(&mut rv, &mut failures).await? {}
        }
    }

    async fn send(&self, event: Event) -> Result<(), Closed> {
        let msg = Msg { res: self.res, generation: self.generation, event };
        self.tx.send(msg).await.map_err(|_| Closed)
    }

    /// Reports a failure and waits out the backoff.
    async fn fail(&self, mut e: SourceError, failures: u32) -> Result<(), Closed> {
        if self.optional && e.kind == ErrorKind::Auth {
            // Authorization runs before routing, so a ServiceExport group that the cluster
            // does not even serve is a 403 for an identity without rights on it.
            e.message.push_str(
                "; or, if this cluster does not use this ServiceExport API, drop it from the source's export APIs",
            );
        }
        tracing::warn!(what = %self.what, error = %e, failures, "Kubernetes request failed");
        self.send(Event::Error(e)).await?;
        tokio::time::sleep(self.tuning.backoff.jittered(failures, fastrand::f64())).await;
        Ok(())
    }

    /// Bounds a request (not a stream) by the request timeout.
    async fn bounded<T>(&self, fut: impl Future<Output = kube::Result<T>>) -> Result<T, Failure> {
        match tokio::time::timeout(self.tuning.request_timeout, fut).await {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(e)) => Err(error::from_kube(&e, &self.what, &self.server)),
            Err(_) => Err(error::timed_out(&self.what, &self.server, self.tuning.request_timeout.as_secs_f64())),
        }
    }

    fn convert(&self, obj: &K) -> Option<(ObjKey, Item)> {
        match (self.convert)(obj) {
            Ok(v) => Some(v),
            Err(reason) => {
                let key = obj_key(obj.meta());
                match reason {
                    // Slices made by other controllers carry no service label: not ours.
                    Skip::NoServiceLabel => {
                        tracing::debug!(what = %self.what, namespace = %key.namespace, name = %key.name, "not a Service's slice")
                    }
                    // One bad object must not hide the others: skip it, say so.
                    Skip::BadName(_) => {
                        tracing::warn!(what = %self.what, namespace = %key.namespace, name = %key.name, %reason, "skipping object")
                    }
                }
                None
            }
        }
    }

    /// A paged, consistent list. Returns the list's resourceVersion.
    async fn list(&self) -> Result<Result<String, Failure>, Closed> {
        self.send(Event::Begin).await?;
        let mut lp = ListParams::default().limit(self.tuning.page_size);
        loop {
            let page = match self.bounded(self.api.list(&lp)).await {
                Ok(p) => p,
                Err(f) => return Ok(Err(f)),
            };
            let items = page.items.iter().filter_map(|o| self.convert(o)).collect();
            self.send(Event::Page(items)).await?;
            match page.metadata.continue_.filter(|c| !c.is_empty()) {
                Some(token) => lp.continue_token = Some(token),
                None => {
                    let Some(rv) = page.metadata.resource_version.filter(|v| !v.is_empty()) else {
                        let e = SourceError::new(
                            ErrorKind::Malformed,
                            format!(
                                "{} answered a list of {} without metadata.resourceVersion",
                                self.server, self.what
                            ),
                        );
                        return Ok(Err(Failure::Other(e)));
                    };
                    self.send(Event::Listed).await?;
                    return Ok(Ok(rv));
                }
            }
        }
    }

    /// One watch request, from `rv` (kept up to date from events and bookmarks).
    async fn watch(&self, rv: &mut String, failures: &mut u32) -> Result<WatchEnd, Closed> {
        let timeout_secs = u32::try_from(self.tuning.watch_timeout.as_secs()).unwrap_or(u32::MAX).max(1);
        let wp = WatchParams::default().timeout(timeout_secs);
        let stream = match self.bounded(self.api.watch(&wp, rv)).await {
            Ok(s) => s,
            Err(Failure::Gone) => return Ok(self.expired()),
            // The type disappeared (CRD deleted): the list decides what that means.
            Err(Failure::NotServed(_)) if self.optional => return Ok(WatchEnd::Relist),
            Err(Failure::NotServed(e) | Failure::Other(e)) => {
                *failures += 1;
                self.fail(e, *failures).await?;
                return Ok(WatchEnd::Resume);
            }
        };
        if *failures > 0 {
            *failures = 0;
            self.send(Event::Healthy).await?;
        }
        let started = tokio::time::Instant::now();
        let mut events = 0u64;
        let mut stream = std::pin::pin!(stream);
        // The server ends the watch after `timeoutSeconds`; silence well past that means the
        // connection died without a FIN.
        let idle = self.tuning.watch_timeout + WATCH_IDLE_MARGIN;
        loop {
            let next = match tokio::time::timeout(idle, stream.next()).await {
                Ok(Some(n)) => n,
                Ok(None) => {
                    // A server (or proxy) that ends watches at once would otherwise make
                    // this loop spin.
                    if events == 0 && started.elapsed() < QUICK_END {
                        tokio::time::sleep(self.tuning.backoff.min).await;
                    }
                    return Ok(WatchEnd::Resume);
                }
                Err(_) => {
                    tracing::info!(what = %self.what, "watch idle past its timeout; reconnecting");
                    return Ok(WatchEnd::Resume);
                }
            };
            events += 1;
            match next {
                Ok(WatchEvent::Added(obj) | WatchEvent::Modified(obj)) => {
                    update_rv(rv, obj.meta().resource_version.as_deref());
                    if let Some((key, item)) = self.convert(&obj) {
                        self.send(Event::Apply(key, item)).await?;
                    } else {
                        // A now-invalid object must not linger in its old, valid form.
                        self.send(Event::Delete(obj_key(obj.meta()))).await?;
                    }
                }
                Ok(WatchEvent::Deleted(obj)) => {
                    update_rv(rv, obj.meta().resource_version.as_deref());
                    self.send(Event::Delete(obj_key(obj.meta()))).await?;
                }
                Ok(WatchEvent::Bookmark(b)) => {
                    // Nothing changed for us up to this version: resume from here, so a
                    // reconnect after history compaction needs no re-list.
                    update_rv(rv, Some(&b.metadata.resource_version));
                }
                Ok(WatchEvent::Error(status)) => match error::from_status(&status, &self.what, &self.server) {
                    Failure::Gone => return Ok(self.expired()),
                    Failure::NotServed(_) if self.optional => return Ok(WatchEnd::Relist),
                    Failure::NotServed(e) | Failure::Other(e) => {
                        *failures += 1;
                        self.fail(e, *failures).await?;
                        return Ok(WatchEnd::Resume);
                    }
                },
                Err(e) => {
                    let (Failure::NotServed(e) | Failure::Other(e)) = error::from_kube(&e, &self.what, &self.server)
                    else {
                        return Ok(self.expired());
                    };
                    *failures += 1;
                    self.fail(e, *failures).await?;
                    return Ok(WatchEnd::Resume);
                }
            }
        }
    }

    fn expired(&self) -> WatchEnd {
        tracing::info!(what = %self.what, "watch resourceVersion expired (410 Gone); listing again");
        WatchEnd::Relist
    }
}

fn update_rv(rv: &mut String, new: Option<&str>) {
    if let Some(v) = new.filter(|v| !v.is_empty()) {
        v.clone_into(rv);
    }
}
