//! The task behind a [`super::ClusterWatch`]: runs one list/watch loop per resource type,
//! folds their reports into the store, and publishes the cluster's snapshot (or its error)
//! after a short debounce, only when it differs from the last one published.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::Client;
use kube::api::{Api, DynamicObject};
use skybridge_api::catalog::{ClusterInfo, SourceSnapshot};
use skybridge_api::model::ServiceKey;
use skybridge_api::source::SourceError;
use tokio::sync::{mpsc, watch};
use tokio::task::{AbortHandle, JoinSet};
use tokio::time::Instant;

use super::store::{Store, Table};
use super::watch::{Event, Item, Msg, ResId, Spec};
use super::{ExportApi, Tuning, convert, error};

/// A snapshot or the error that currently prevents one.
pub(crate) type Outcome = Result<SourceSnapshot, SourceError>;

/// What the runner needs to start its loops.
pub(crate) struct Setup {
    pub client: Client,
    pub cluster: ClusterInfo,
    pub export_apis: Vec<ExportApi>,
    pub tuning: Tuning,
    /// Names the server in operator messages.
    pub server: String,
}

/// The EndpointSlice loop currently running.
struct SliceLoop {
    /// The exported services at its start: a later export needs a new list to see its slices.
    cover: BTreeSet<ServiceKey>,
    abort: AbortHandle,
}

struct Runner {
    setup: Arc<Setup>,
    store: Store,
    /// Exported services, kept in step with the export tables for slice filtering.
    exported: BTreeSet<ServiceKey>,
    tx: mpsc::Sender<Msg>,
    tasks: JoinSet<()>,
    slices: Option<SliceLoop>,
    slice_gen: u64,
    /// The slice loop generation whose list has completed.
    slices_synced: Option<u64>,
    errors: BTreeMap<ResId, SourceError>,
    /// Export groups whose CRD is not installed.
    absent: Vec<bool>,
    out: watch::Sender<Option<Outcome>>,
    last: Option<Outcome>,
}

/// Runs until every receiver of `out` is gone. The loops it spawns die with it (their
/// `JoinSet` aborts them when dropped).
pub(crate) async fn run(setup: Setup, out: watch::Sender<Option<Outcome>>) {
    // Bounded: a slow runner slows the loops' reads rather than growing a queue.
    let (tx, mut rx) = mpsc::channel(256);
    let groups = setup.export_apis.len();
    let mut r = Runner {
        setup: Arc::new(setup),
        store: Store::new(groups),
        exported: BTreeSet::new(),
        tx,
        tasks: JoinSet::new(),
        slices: None,
        slice_gen: 0,
        slices_synced: None,
        errors: BTreeMap::new(),
        absent: vec![false; groups],
        out,
        last: None,
    };
    r.start_fixed_loops();
    let debounce = r.setup.tuning.debounce;
    let mut deadline: Option<Instant> = None;
    loop {
        tokio::select! {
            msg = rx.recv() => {
                let Some(msg) = msg else { return };
                r.apply(msg);
                // A fixed window from the first event (not reset by later ones), so steady
                // churn still publishes every `debounce`.
                deadline.get_or_insert_with(|| Instant::now() + debounce);
            }
            _ = sleep_until(deadline), if deadline.is_some() => {
                deadline = None;
                r.flush();
            }
            _ = r.out.closed() => return,
        }
    }
}

async fn sleep_until(deadline: Option<Instant>) {
    if let Some(d) = deadline {
        tokio::time::sleep_until(d).await;
    }
}

impl Runner {
    fn spec<K: kube::core::Resource>(
        &self,
        api: Api<K>,
        res: ResId,
        generation: u64,
        what: String,
        optional: bool,
        convert: super::watch::Convert<K>,
    ) -> Spec<K> {
        Spec {
            api,
            res,
            generation,
            what,
            server: self.setup.server.clone(),
            optional,
            convert,
            tuning: self.setup.tuning.clone(),
            tx: self.tx.clone(),
        }
    }

    fn start_fixed_loops(&mut self) {
        let client = self.setup.client.clone();
        for (i, api) in self.setup.export_apis.clone().into_iter().enumerate() {
            let ar = api.api_resource();
            let spec = self.spec(
                Api::<DynamicObject>::all_with(client.clone(), &ar),
                ResId::Export(i),
                0,
                api.to_string(),
                true,
                |o| convert::export(o).map(|(k, r)| (k, Item::Export(r))),
            );
            self.tasks.spawn(spec.run());
        }
        let spec =
            self.spec(Api::<Service>::all(client), ResId::Services, 0, "services (core/v1)".into(), false, |o| {
                convert::service(o).map(|(k, r)| (k, Item::Service(r)))
            });
        self.tasks.spawn(spec.run());
    }

    /// (Re)starts the EndpointSlice loop covering the services exported now.
    fn start_slices(&mut self) {
        if let Some(old) = self.slices.take() {
            old.abort.abort();
        }
        self.slice_gen += 1;
        self.errors.remove(&ResId::Slices);
        let spec = self.spec(
            Api::<EndpointSlice>::all(self.setup.client.clone()),
            ResId::Slices,
            self.slice_gen,
            "endpointslices.discovery.k8s.io/v1".into(),
            false,
            |o| convert::slice(o).map(|(k, r)| (k, Item::Slice(r))),
        );
        let abort = self.tasks.spawn(spec.run());
        self.slices = Some(SliceLoop { cover: self.exported.clone(), abort });
    }

    fn refresh_exported(&mut self) {
        self.exported = self.store.exported().into_keys().collect();
        self.store.prune_slices();
    }

    fn apply(&mut self, msg: Msg) {
        let Msg { res, generation, event } = msg;
        if res == ResId::Slices && generation != self.slice_gen {
            return; // from a loop that has been replaced
        }
        match event {
            Event::Begin => self.with_table(res, |t| t.begin(), |t| t.begin(), |t| t.begin()),
            Event::Page(items) => {
                for (key, item) in items {
                    match (res, item) {
                        (ResId::Export(i), Item::Export(r)) => {
                            if let Some(t) = self.store.exports.get_mut(i) {
                                t.listed(key, r);
                            }
                        }
                        (ResId::Services, Item::Service(r)) => self.store.services.listed(key, r),
                        (ResId::Slices, Item::Slice(r)) if self.exported.contains(&r.service) => {
                            self.store.slices.listed(key, r)
                        }
                        _ => {}
                    }
                }
            }
            Event::Listed => {
                self.errors.remove(&res);
                self.with_table(
                    res,
                    |t| {
                        t.finish();
                    },
                    |t| {
                        t.finish();
                    },
                    |t| {
                        t.finish();
                    },
                );
                match res {
                    ResId::Export(i) => {
                        self.mark_present(i);
                        self.refresh_exported();
                    }
                    ResId::Slices => self.slices_synced = Some(generation),
                    ResId::Services => {}
                }
            }
            Event::Apply(key, item) => {
                self.errors.remove(&res);
                match (res, item) {
                    (ResId::Export(i), Item::Export(r)) => {
                        if let Some(t) = self.store.exports.get_mut(i)
                            && t.apply(key, r)
                        {
                            self.refresh_exported();
                        }
                    }
                    (ResId::Services, Item::Service(r)) => {
                        self.store.services.apply(key, r);
                    }
                    (ResId::Slices, Item::Slice(r)) => {
                        if self.exported.contains(&r.service) {
                            self.store.slices.apply(key, r);
                        } else {
                            // The slice may have moved to an unexported service.
                            self.store.slices.delete(&key);
                        }
                    }
                    _ => {}
                }
            }
            Event::Delete(key) => {
                self.errors.remove(&res);
                let mut exports_changed = false;
                self.with_table(
                    res,
                    |t| exports_changed = t.delete(&key),
                    |t| {
                        t.delete(&key);
                    },
                    |t| {
                        t.delete(&key);
                    },
                );
                if exports_changed {
                    self.refresh_exported();
                }
            }
            Event::Healthy => {
                self.errors.remove(&res);
            }
            Event::Error(e) => {
                self.errors.insert(res, e);
            }
            Event::Absent => {
                self.errors.remove(&res);
                if let ResId::Export(i) = res {
                    if !self.absent.get(i).copied().unwrap_or(true) {
                        tracing::info!(
                            cluster = %self.setup.cluster.id,
                            api = %self.setup.export_apis.get(i).map(ToString::to_string).unwrap_or_default(),
                            "ServiceExport API not installed on this cluster; treating it as having no exports"
                        );
                    }
                    if let Some(a) = self.absent.get_mut(i) {
                        *a = true;
                    }
                    if let Some(t) = self.store.exports.get_mut(i) {
                        *t = Table::default();
                        t.begin();
                        t.finish();
                    }
                    self.refresh_exported();
                }
            }
        }
    }

    fn mark_present(&mut self, i: usize) {
        if let Some(a) = self.absent.get_mut(i)
            && *a
        {
            *a = false;
            tracing::info!(cluster = %self.setup.cluster.id, "ServiceExport API now installed");
        }
    }

    fn with_table(
        &mut self,
        res: ResId,
        exports: impl FnOnce(&mut Table<convert::ExportRec>),
        services: impl FnOnce(&mut Table<convert::ServiceRec>),
        slices: impl FnOnce(&mut Table<convert::SliceRec>),
    ) {
        match res {
            ResId::Export(i) => {
                if let Some(t) = self.store.exports.get_mut(i) {
                    exports(t)
                }
            }
            ResId::Services => services(&mut self.store.services),
            ResId::Slices => slices(&mut self.store.slices),
        }
    }

    /// Starts or restarts the slice loop when needed, then publishes what changed.
    fn flush(&mut self) {
        // Reap aborted slice loops so the set does not grow with restarts.
        while self.tasks.try_join_next().is_some() {}
        let exports_settled = self.store.exports.iter().enumerate().all(|(i, t)| {
            t.synced || self.absent.get(i).copied().unwrap_or(false) || self.errors.contains_key(&ResId::Export(i))
        });
        if exports_settled {
            // Slices are only kept for exported services, so a newly exported service's
            // slices were dropped when they went by: list them again.
            let restart = match &self.slices {
                None => true,
                Some(s) => !self.exported.is_subset(&s.cover),
            };
            if restart {
                if self.slices.is_some() {
                    tracing::debug!(cluster = %self.setup.cluster.id, "new exports; re-listing EndpointSlices");
                }
                self.start_slices();
            }
        }
        let outcome = if let Some(e) = self.errors.values().min_by_key(|e| error::precedence(e.kind)) {
            Err(e.clone())
        } else {
            let ready = exports_settled && self.store.services.synced && self.slices_synced == Some(self.slice_gen);
            if !ready {
                return;
            }
            let prev = self.last.as_ref().and_then(|o| o.as_ref().ok());
            Ok(self.store.snapshot(&self.setup.cluster, prev))
        };
        if self.last.as_ref() == Some(&outcome) {
            return;
        }
        self.last = Some(outcome.clone());
        self.out.send_replace(Some(outcome));
    }
}
