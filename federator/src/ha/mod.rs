//! Running as one of several replicas on etcd: the I/O shell around the pure [`election`],
//! [`view`] and [`own`] logic.
//!
//! Every replica watches the whole prefix and serves what it shows (catalog versions verified
//! by digest, policies, gateways and their sessions on every replica, events, source health);
//! holds a lease with its replica record and the presence of its gateway sessions; and
//! campaigns for the leader key. The one that holds it runs [`Leader`] (sources, merge,
//! expiry), whose writes etcd fences by the term it won. When etcd cannot be reached a replica
//! keeps serving its last catalog read-only and reports degraded; when etcd returns it resumes
//! from what etcd holds.

pub mod election;
pub mod own;
pub mod view;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use skybridge_api::backoff::Backoff;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::Instrument;

use crate::leader::{Ended, Leader};
use crate::metrics::Metrics;
use crate::sources::now_millis;
use crate::state::State;
use crate::store::etcd::records::{ReplicaRecord, Role};
use crate::store::etcd::{Campaign, Change, EtcdStore};
use crate::store::{Persisted, Store, StoreError};
use election::{Action, Election, Holder};
use own::{OwnKeys, Owned, Plan};
use view::{Effect, View};

/// What a spawned store call reports back to the loop.
enum Outcome {
    Granted(Result<i64, StoreError>, Instant),
    Refreshed(i64, Result<i64, StoreError>, Instant),
    Campaigned(i64, Result<Campaign, StoreError>),
    Loaded(Result<(i64, Vec<Change>), StoreError>),
    Watching(Result<etcd_client::WatchStream, StoreError>),
    Wrote(i64, Result<Plan, StoreError>),
    LeaderLoaded(i64, Result<Persisted, StoreError>),
    LeaderEnded(i64, Ended),
}

/// One replica's membership in the federation.
pub struct Replica {
    pub store: Arc<EtcdStore>,
    pub state: Arc<State>,
    pub metrics: Metrics,
    pub leader: Leader,
    pub lease_ttl: Duration,
    /// Retry pacing for failed store calls.
    pub backoff: Backoff,
    /// `/readyz`: set once the first read of etcd is served.
    pub ready: Arc<std::sync::atomic::AtomicBool>,
}

/// The loop's bookkeeping besides the pure parts.
struct Shell {
    tx: mpsc::Sender<Outcome>,
    tasks: TaskTracker,
    /// Cancels the running leader's work.
    leading: Option<(i64, CancellationToken)>,
    /// A term won while the previous leader's work was still stopping.
    pending_lead: Option<i64>,
    watch: Option<etcd_client::WatchStream>,
    /// A reload or watch (re)start is in flight.
    watch_starting: bool,
    watch_failures: u32,
    grant_failures: u32,
    refresh_in_flight: bool,
    write_in_flight: bool,
    own: OwnKeys,
    /// When the served catalog version last changed.
    version_since: u64,
    last_error: Option<String>,
    /// Since when store calls fail, and per operation when that was last logged.
    failing_since: Option<Instant>,
    last_warned: BTreeMap<&'static str, Instant>,
    /// Failed loads of the current term (paces the retries).
    lead_load_failures: u32,
}

/// During an outage, how often a still-failing store is logged again.
const WARN_EVERY: Duration = Duration::from_secs(30);

impl Replica {
    /// Runs until `cancel`; then stops leading, resigns and revokes its lease so that another
    /// replica takes over at once rather than after the lease's TTL.
    pub async fn run(self, cancel: CancellationToken) {
        let (tx, mut rx) = mpsc::channel(64);
        let mut shell = Shell {
            tx,
            tasks: TaskTracker::new(),
            leading: None,
            pending_lead: None,
            watch: None,
            watch_starting: true,
            watch_failures: 0,
            grant_failures: 0,
            refresh_in_flight: false,
            write_in_flight: false,
            own: OwnKeys::default(),
            version_since: now_millis(),
            last_error: None,
            failing_since: None,
            last_warned: BTreeMap::new(),
            lead_load_failures: 0,
        };
        let mut view = View::new(self.store.keys().clone(), self.state.catalog());
        let (mut election, first) = Election::new(self.store.name(), self.lease_ttl);
        self.spawn_load(&shell);
        self.perform(&mut shell, first);
        // Members that refuse connections leave the client's rotation until they accept again.
        let (store, stop, every) = (self.store.clone(), cancel.clone(), election.keepalive_interval());
        shell.tasks.spawn(
            async move {
                let mut tick = tokio::time::interval(every);
                tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                loop {
                    tokio::select! {
                        _ = stop.cancelled() => return,
                        _ = tick.tick() => store.check_members(every).await,
                    }
                }
            }
            .instrument(tracing::info_span!("etcd_members")),
        );
        let mut local = self.state.watch_local();
        let mut tick = tokio::time::interval(election.keepalive_interval().min(Duration::from_millis(500)));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut refresh = tokio::time::interval(election.keepalive_interval());
        refresh.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut own_dirty = true;
        loop {
            tokio::select! {
                _ = cancel.cancelled() => break,
                Some(outcome) = rx.recv() => {
                    self.on_outcome(&mut shell, &mut election, &mut view, outcome);
                }
                msg = next_watch(&mut shell.watch) => self.on_watch(&mut shell, &mut election, &mut view, msg),
                _ = refresh.tick() => {
                    if let Some(lease) = election.lease()
                        && !shell.refresh_in_flight
                    {
                        shell.refresh_in_flight = true;
                        let (store, tx) = (self.store.clone(), shell.tx.clone());
                        shell.tasks.spawn(async move {
                            let sent = Instant::now();
                            let r = store.keep_alive(lease).await;
                            let _ = tx.send(Outcome::Refreshed(lease, r, sent)).await;
                        });
                    }
                }
                _ = tick.tick() => {
                    let actions = election.tick(Instant::now());
                    self.perform(&mut shell, actions);
                    if shell.watch.is_none() && !shell.watch_starting {
                        self.spawn_watch(&mut shell, view.revision());
                    }
                    self.sync_own(&mut shell, &election, &mut own_dirty);
                }
                changed = local.changed() => {
                    if changed.is_err() { break }
                    own_dirty = true;
                }
            }
            self.show(&shell, &election);
        }
        // Outcomes still in flight are of no use now; dropping the receiver lets their tasks end.
        drop(rx);
        self.shutdown(shell, election).await;
    }

    /// Applies the role and store health to the shared state and metrics.
    fn show(&self, shell: &Shell, election: &Election) {
        let now = now_millis();
        let role = election.role();
        self.state.set_role(role, now);
        self.metrics.leader.set(i64::from(role == Role::Leader));
        let error = match (&shell.watch, role) {
            (_, Role::Degraded) | (None, _) => {
                Some(shell.last_error.clone().unwrap_or_else(|| "connecting to etcd".to_owned()))
            }
            _ => None,
        };
        self.metrics.store_up.set(i64::from(error.is_none()));
        self.state.set_store_health(error, now);
    }

    fn spawn_load(&self, shell: &Shell) {
        let (store, tx) = (self.store.clone(), shell.tx.clone());
        shell.tasks.spawn(
            async move {
                // The layout check is repeated here: an etcd that was down at start-up was not
                // checked (nor the layout version written) then.
                let r = match store.check_schema().await {
                    Ok(()) => store.range_all().await,
                    Err(e) => Err(e),
                };
                let _ = tx.send(Outcome::Loaded(r)).await;
            }
            .instrument(tracing::info_span!("etcd_load")),
        );
    }

    fn spawn_watch(&self, shell: &mut Shell, revision: i64) {
        shell.watch_starting = true;
        let wait = if shell.watch_failures == 0 {
            Duration::ZERO
        } else {
            self.backoff.jittered(shell.watch_failures, fastrand::f64())
        };
        let (store, tx) = (self.store.clone(), shell.tx.clone());
        shell.tasks.spawn(
            async move {
                tokio::time::sleep(wait).await;
                let r = store.watch(revision + 1).await;
                let _ = tx.send(Outcome::Watching(r)).await;
            }
            .instrument(tracing::info_span!("etcd_watch")),
        );
    }

    /// A store call failed. Logged when the outage starts and then every `WARN_EVERY`: an
    /// outage is not a log flood.
    fn failed(&self, shell: &mut Shell, what: &'static str, e: &StoreError) {
        let now = Instant::now();
        if shell.last_warned.get(what).is_none_or(|t| now.duration_since(*t) >= WARN_EVERY) {
            let failing_for = shell.failing_since.map(|t| now.duration_since(t));
            tracing::warn!(error = %e, ?failing_for, "{what} failed; retrying");
            shell.last_warned.insert(what, now);
        }
        shell.failing_since.get_or_insert(now);
        shell.last_error = Some(e.to_string());
    }

    /// A store call succeeded.
    fn answered(&self, shell: &mut Shell) {
        if let Some(since) = shell.failing_since.take() {
            tracing::info!(after = ?since.elapsed(), "etcd answers again");
        }
        shell.last_error = None;
    }

    fn on_outcome(&self, shell: &mut Shell, election: &mut Election, view: &mut View, outcome: Outcome) {
        match outcome {
            Outcome::Granted(Ok(id), sent) => {
                self.answered(shell);
                shell.grant_failures = 0;
                shell.own.reset();
                tracing::info!(lease = id, "lease granted");
                let a = election.granted(id, sent);
                self.perform(shell, a);
            }
            Outcome::Granted(Err(e), _) => {
                self.failed(shell, "granting a lease", &e);
                shell.grant_failures += 1;
                let a = election.grant_failed();
                self.perform(shell, a);
            }
            Outcome::Refreshed(lease, r, sent) => {
                shell.refresh_in_flight = false;
                match r {
                    Ok(ttl) => {
                        self.answered(shell);
                        let a = election.refreshed(lease, ttl, sent);
                        if ttl == 0 {
                            tracing::warn!(lease, "the lease expired (this replica was paused or cut off too long)");
                        }
                        self.perform(shell, a);
                    }
                    Err(e) => self.failed(shell, "refreshing the lease", &e),
                }
            }
            Outcome::Campaigned(lease, r) => {
                let a = match r {
                    Ok(Campaign::Won { term }) => election.won(lease, term),
                    Ok(Campaign::Held { by, term, lease: held_on, at }) => {
                        let holder = (!by.is_empty()).then_some(Holder { name: by, term, lease: held_on });
                        election.held(holder, at)
                    }
                    Err(e) => {
                        self.failed(shell, "campaigning for leadership", &e);
                        election.campaign_failed()
                    }
                };
                self.perform(shell, a);
            }
            Outcome::Loaded(Ok((revision, changes))) => {
                self.answered(shell);
                shell.watch_failures = 0;
                self.state.clear_remote();
                let effects = view.reset(revision, &changes);
                self.apply(shell, election, effects);
                self.state.set_store_problems(view.invalid().clone());
                // Ready from the first read on, and through later outages (static stability).
                self.ready.store(true, std::sync::atomic::Ordering::Release);
                shell.watch = None;
                self.spawn_watch(shell, revision);
            }
            Outcome::Loaded(Err(e)) => {
                self.failed(shell, "reading etcd", &e);
                shell.watch_failures += 1;
                // Retried like a watch: after a backoff, from nothing.
                let (store, tx) = (self.store.clone(), shell.tx.clone());
                let wait = self.backoff.jittered(shell.watch_failures, fastrand::f64());
                shell.tasks.spawn(async move {
                    tokio::time::sleep(wait).await;
                    let _ = tx.send(Outcome::Loaded(store.range_all().await)).await;
                });
            }
            Outcome::Watching(Ok(w)) => {
                tracing::debug!(from = view.revision() + 1, "watching etcd");
                shell.watch_starting = false;
                shell.watch = Some(w);
            }
            Outcome::Watching(Err(e)) => {
                shell.watch_starting = false;
                shell.watch_failures += 1;
                self.failed(shell, "watching etcd", &e);
            }
            Outcome::Wrote(lease, r) => {
                shell.write_in_flight = false;
                match r {
                    // Keys written on a lease given up meanwhile die with it: not counted.
                    Ok(plan) if election.lease() == Some(lease) => shell.own.committed(plan),
                    Ok(_) => {}
                    Err(e) => self.failed(shell, "writing this replica's records", &e),
                }
            }
            Outcome::LeaderLoaded(term, r) => self.start_leading(shell, election, term, r),
            Outcome::LeaderEnded(term, ended) => {
                let Some((t, stop)) = shell.leading.clone() else { return };
                if t != term {
                    return;
                }
                shell.leading = None;
                if ended == Ended::Fenced {
                    self.metrics.fenced_writes.inc();
                    let a = election.fenced();
                    self.perform(shell, a);
                } else if !stop.is_cancelled() && election.term() == Some(term) {
                    // Nobody asked it to stop (a task failed): leading without running the
                    // sources would stall the federation, so hand the leadership on.
                    tracing::error!(term, "the leader's work ended on its own; giving up the leadership");
                    self.resign(shell, term);
                    let a = election.fenced();
                    self.perform(shell, a);
                }
                self.lead_pending(shell, election);
            }
        }
    }

    fn on_watch(
        &self,
        shell: &mut Shell,
        election: &mut Election,
        view: &mut View,
        msg: Result<Option<etcd_client::WatchResponse>, etcd_client::Error>,
    ) {
        match msg {
            Ok(Some(resp)) if resp.canceled() => {
                shell.watch = None;
                if resp.compact_revision() > 0 {
                    // The history to resume from is gone: read everything again.
                    tracing::info!(compacted = resp.compact_revision(), "watch history compacted; reloading from etcd");
                    shell.watch_starting = true;
                    self.spawn_load(shell);
                } else {
                    let e = StoreError::Unavailable {
                        endpoints: String::new(),
                        reason: format!("watch cancelled: {}", resp.cancel_reason()),
                    };
                    self.failed(shell, "watching etcd", &e);
                }
            }
            Ok(Some(resp)) => {
                shell.watch_failures = 0;
                self.answered(shell);
                let changes: Vec<Change> = resp.events().iter().filter_map(Change::from_event).collect();
                let header = resp.header().map(|h| h.revision());
                let revision = view::reached(view.revision(), resp.created(), header, &changes);
                let effects = view.apply(revision, &changes);
                self.apply(shell, election, effects);
                self.state.set_store_problems(view.invalid().clone());
            }
            Ok(None) => {
                shell.watch = None;
                shell.watch_failures += 1;
                let e = StoreError::Unavailable { endpoints: String::new(), reason: "the watch stream ended".into() };
                self.failed(shell, "watching etcd", &e);
            }
            Err(e) => {
                shell.watch = None;
                shell.watch_failures += 1;
                let e = crate::store::etcd::classify("etcd", e);
                self.failed(shell, "watching etcd", &e);
            }
        }
    }

    /// Applies what the view saw to the shared state.
    fn apply(&self, shell: &mut Shell, election: &mut Election, effects: Vec<Effect>) {
        for e in effects {
            match e {
                Effect::Publish(c) => {
                    tracing::debug!(version = c.version, "serving catalog version");
                    self.metrics.catalog_version.set(c.version as i64);
                    self.metrics.catalog_services.set(c.services.len() as i64);
                    self.state.publish(c);
                    shell.version_since = now_millis();
                }
                Effect::Policy(k, p) => self.state.set_policy(k, p),
                Effect::Gateway(r) => self.state.apply_record(r),
                Effect::GatewayRemoved(k) => {
                    if let Some(record) = self.state.remove_unless_local(&k) {
                        // Removed while this replica holds its session (a reconnect raced the
                        // expiry): write it back.
                        let store = self.store.clone();
                        shell.tasks.spawn(async move { store.put_gateway(&record).await });
                    }
                }
                Effect::Presence(k, replica, p) => self.state.apply_remote(k, &replica, p),
                Effect::Replica(name, r) => self.state.set_replica(&name, r),
                Effect::Leader { holder, at } => {
                    let a = election.leader_seen(holder, at);
                    self.perform(shell, a);
                }
                Effect::Sources(s) => {
                    if election.term().is_none() {
                        self.state.set_sources(s);
                    }
                }
                Effect::Event(e) => self.state.broadcast_event(e),
                // Only the leader runs the core; elsewhere this does nothing.
                Effect::Confirm(source) => drop(self.state.confirm_removal(&source)),
                Effect::Invalid { key, reason } => {
                    tracing::warn!(%key, %reason, "ignoring a key under the store prefix this federator cannot use");
                }
                Effect::Mismatch { version, stored, computed } => tracing::warn!(
                    version,
                    stored = format_args!("{stored:#x}"),
                    computed = format_args!("{computed:#x}"),
                    "the catalog in etcd does not match its digest; keeping the last good catalog"
                ),
            }
        }
    }

    fn perform(&self, shell: &mut Shell, actions: Vec<Action>) {
        self.perform_all(shell, actions);
    }

    fn resign(&self, shell: &Shell, term: i64) {
        let store = self.store.clone();
        shell.tasks.spawn(
            async move {
                if let Err(e) = store.resign(term).await {
                    tracing::warn!(error = %e, term, "releasing the leader key failed; it goes with the lease");
                }
            }
            .instrument(tracing::info_span!("etcd_resign", term)),
        );
    }

    fn perform_all(&self, shell: &mut Shell, actions: Vec<Action>) {
        for action in actions {
            match action {
                Action::Grant => {
                    let wait = if shell.grant_failures == 0 {
                        Duration::ZERO
                    } else {
                        self.backoff.jittered(shell.grant_failures, fastrand::f64())
                    };
                    let (store, tx, ttl) = (self.store.clone(), shell.tx.clone(), self.lease_ttl);
                    shell.tasks.spawn(
                        async move {
                            tokio::time::sleep(wait).await;
                            let sent = Instant::now();
                            let _ = tx.send(Outcome::Granted(store.grant(ttl).await, sent)).await;
                        }
                        .instrument(tracing::info_span!("etcd_grant")),
                    );
                }
                Action::Campaign(lease) => {
                    let (store, tx) = (self.store.clone(), shell.tx.clone());
                    shell.tasks.spawn(
                        async move {
                            let r = store.campaign(lease, now_millis()).await;
                            let _ = tx.send(Outcome::Campaigned(lease, r)).await;
                        }
                        .instrument(tracing::info_span!("etcd_campaign")),
                    );
                }
                Action::Revoke(lease) => {
                    let store = self.store.clone();
                    shell.tasks.spawn(
                        async move {
                            // Best effort: etcd expires it anyway, this only makes it sooner.
                            let _ = store.revoke(lease).await;
                        }
                        .instrument(tracing::info_span!("etcd_revoke", lease)),
                    );
                }
                Action::Lead(term) => {
                    if shell.leading.is_some() {
                        // The previous term's work must be gone before this one writes.
                        shell.pending_lead = Some(term);
                        if let Some((_, stop)) = &shell.leading {
                            stop.cancel();
                        }
                    } else {
                        self.begin_lead(shell, term);
                    }
                }
                Action::StepDown(why) => {
                    self.store.set_term(None);
                    shell.pending_lead = None;
                    if let Some((term, stop)) = &shell.leading {
                        tracing::warn!(term, why, "stepping down as leader");
                        stop.cancel();
                        self.metrics.leader_changes.inc();
                        let (state, msg) =
                            (self.state.clone(), format!("replica {} stopped leading: {why}", self.store.name()));
                        shell.tasks.spawn(async move { state.event("leader_lost", msg).await });
                    }
                }
            }
        }
    }

    /// Loads what the previous leader left, then starts the leader's work on it.
    fn begin_lead(&self, shell: &mut Shell, term: i64) {
        tracing::info!(term, "won the leadership; loading the catalog and sources from etcd");
        self.store.set_term(Some(term));
        shell.lead_load_failures = 0;
        // Nothing runs yet, but a newer term must wait for this one.
        shell.leading = Some((term, CancellationToken::new()));
        self.spawn_lead_load(shell, term, Duration::ZERO);
    }

    fn spawn_lead_load(&self, shell: &Shell, term: i64, wait: Duration) {
        let (store, tx) = (self.store.clone(), shell.tx.clone());
        shell.tasks.spawn(
            async move {
                tokio::time::sleep(wait).await;
                let r = store.load().await;
                let _ = tx.send(Outcome::LeaderLoaded(term, r)).await;
            }
            .instrument(tracing::info_span!("leader_load", term)),
        );
    }

    /// Starts a term won while the previous term's work was still stopping, once it has.
    fn lead_pending(&self, shell: &mut Shell, election: &Election) {
        if shell.leading.is_none()
            && let Some(t) = shell.pending_lead.take()
            && election.term() == Some(t)
        {
            self.begin_lead(shell, t);
        }
    }

    fn start_leading(
        &self,
        shell: &mut Shell,
        election: &mut Election,
        term: i64,
        loaded: Result<Persisted, StoreError>,
    ) {
        let Some((t, stop)) = shell.leading.clone() else { return };
        if t != term {
            return;
        }
        if election.term() != Some(term) || stop.is_cancelled() {
            // Stepped down while loading.
            shell.leading = None;
            self.lead_pending(shell, election);
            return;
        }
        let persisted = match loaded {
            Ok(p) => p,
            Err(e) => {
                // Still the leader (the lease decides when not): read again after a pause.
                self.failed(shell, "loading the catalog as the new leader", &e);
                shell.lead_load_failures += 1;
                let wait = self.backoff.jittered(shell.lead_load_failures, fastrand::f64());
                self.spawn_lead_load(shell, term, wait);
                return;
            }
        };
        self.metrics.leader_changes.inc();
        let version = persisted.catalog.version;
        let (leader, tx) = (self.leader.clone(), shell.tx.clone());
        shell.tasks.spawn(
            async move {
                let ended = leader.run(persisted, stop).await;
                let _ = tx.send(Outcome::LeaderEnded(term, ended)).await;
            }
            .instrument(tracing::info_span!("leader", term)),
        );
        let msg = format!("replica {} leads (term {term}), from catalog version {version}", self.store.name());
        let state = self.state.clone();
        shell.tasks.spawn(async move { state.event("leader_elected", msg).await });
    }

    /// Writes this replica's record and its sessions' presence when they changed.
    fn sync_own(&self, shell: &mut Shell, election: &Election, dirty: &mut bool) {
        let Some(lease) = election.lease() else { return };
        if shell.write_in_flight {
            return;
        }
        let now = now_millis();
        let local = self.state.local_gateways();
        let keys = self.store.keys();
        let (role, role_since) = self.state.role();
        let catalog = self.state.catalog();
        let record = ReplicaRecord {
            name: self.store.name().to_owned(),
            role,
            role_since,
            catalog_version: catalog.version,
            version_since: shell.version_since,
            started_at: self.state.identity().started_at,
            gateways: local.len(),
            software: env!("CARGO_PKG_VERSION").into(),
            certificate: self.state.certificate(),
        };
        let mut desired = BTreeMap::from([(keys.replica(self.store.name()), Owned::Replica(record))]);
        for ((cluster, instance), p) in local {
            desired.insert(keys.presence(&cluster, &instance, self.store.name()), Owned::Presence(p));
        }
        let plan = shell.own.plan(desired, now);
        *dirty = false;
        if plan.is_empty() {
            return;
        }
        shell.write_in_flight = true;
        let (store, tx) = (self.store.clone(), shell.tx.clone());
        shell.tasks.spawn(
            async move {
                let r = store.write_own(lease, plan.puts.clone(), plan.deletes.clone()).await.map(|()| plan);
                let _ = tx.send(Outcome::Wrote(lease, r)).await;
            }
            .instrument(tracing::info_span!("etcd_own_keys")),
        );
    }

    async fn shutdown(self, shell: Shell, election: Election) {
        if let Some((_, stop)) = &shell.leading {
            stop.cancel();
        }
        shell.tasks.close();
        // The leader's last write, then hand over: resign and revoke, so that the others do
        // not wait a TTL. Bounded: with etcd down there is nobody to hand over to.
        let wait = self.lease_ttl;
        if tokio::time::timeout(wait, shell.tasks.wait()).await.is_err() {
            tracing::warn!("replica tasks did not stop in time");
        }
        if let Some(term) = election.term() {
            let _ = tokio::time::timeout(wait, self.store.resign(term)).await;
        }
        if let Some(lease) = election.lease() {
            let _ = tokio::time::timeout(wait, self.store.revoke(lease)).await;
        }
        self.store.set_term(None);
    }
}

/// The next watch message, or never when there is no watch.
async fn next_watch(
    watch: &mut Option<etcd_client::WatchStream>,
) -> Result<Option<etcd_client::WatchResponse>, etcd_client::Error> {
    match watch {
        Some(w) => w.message().await,
        None => std::future::pending().await,
    }
}
