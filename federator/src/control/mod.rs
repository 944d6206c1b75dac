//! The gateway control service: one bidirectional stream per gateway (Hello, snapshot, deltas,
//! ACK/NACK, measurement reports). Each session has its own bounded queue; a gateway that falls
//! behind is skipped until it has room again and then gets a fresh snapshot, so a slow or stuck
//! gateway never delays the others.

pub mod incoming;
pub mod session;

use std::sync::Arc;
use std::time::Duration;

use crate::paths::PathEvent;
use crate::traffic::{Counters, Entry};
use skybridge_api::catalog::{Delta, GlobalCatalog, diff};
use skybridge_api::model::{Cloud, ClusterId};
use skybridge_api::proto::{WirePolicies, delta_to_wire, wire};
use tokio::sync::mpsc;
use tokio_stream::{Stream, StreamExt};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tonic::{Request, Response, Status, Streaming};
use tracing::Instrument;
use wire::{federator_message, gateway_message};

use crate::metrics::{KindLabels, Metrics};
use crate::sources::now_millis;
use crate::state::{PeerReport, State};
use crate::store::Store;
use crate::store::etcd::records::PeerSample;
use incoming::PeerCluster;
use session::{Opening, Pushed, SessionLogic, Update};

/// Limits of the control service.
#[derive(Debug, Clone, Copy)]
pub struct ControlLimits {
    /// Messages queued per gateway before it counts as lagging.
    pub queue: usize,
    /// How long a gateway has to send Hello after connecting.
    pub hello_timeout: Duration,
    /// How long sending one whole snapshot may take before the session is closed.
    pub snapshot_send_timeout: Duration,
    /// How long a snapshot slot is held waiting for the gateway's ACK or NACK.
    pub snapshot_ack_timeout: Duration,
}

/// The tonic service.
pub struct ControlService {
    state: Arc<State>,
    limits: ControlLimits,
    /// Ends every session on shutdown: graceful HTTP/2 shutdown waits for open streams, and
    /// these streams are long-lived.
    shutdown: CancellationToken,
    /// Sessions are tracked so that shutdown waits until none holds the state (and its store).
    tasks: TaskTracker,
    metrics: Metrics,
    /// Sessions are refused until it is set: a replica that has not read its store yet has
    /// nothing to serve, and the gateway should try another replica.
    ready: Arc<std::sync::atomic::AtomicBool>,
}

impl ControlService {
    /// A service over the shared state.
    pub fn new(
        state: Arc<State>,
        limits: ControlLimits,
        shutdown: CancellationToken,
        tasks: TaskTracker,
        metrics: Metrics,
    ) -> Self {
        let ready = Arc::new(std::sync::atomic::AtomicBool::new(true));
        ControlService { state, limits, shutdown, tasks, metrics, ready }
    }

    /// Refuses sessions while `ready` is unset.
    pub fn serving_when(mut self, ready: Arc<std::sync::atomic::AtomicBool>) -> Self {
        self.ready = ready;
        self
    }
}

type Outbound = mpsc::Sender<Result<Outgoing, Status>>;

/// What a session queues for its gateway. A snapshot part is queued as a reference into the
/// per-version cache and copied into a message only when the transport asks for the next one,
/// so queues full of snapshot parts (many gateways connecting at once) cost no copies.
enum Outgoing {
    Message(wire::FederatorMessage),
    Part {
        parts: Arc<Vec<wire::Snapshot>>,
        index: usize,
        /// The gateway and policy lists, for the first part (they are not in the cache).
        lists: Option<(Vec<wire::Gateway>, WirePolicies)>,
    },
}

impl Outgoing {
    fn into_message(self) -> wire::FederatorMessage {
        match self {
            Outgoing::Message(m) => m,
            Outgoing::Part { parts, index, lists } => {
                let mut part = parts[index].clone();
                let (gateways, policies) = lists.unwrap_or_default();
                // The receiver keeps the first part's lists and default (SnapshotAssembler).
                (part.gateways, part.policies, part.deny_by_default, part.trust_domains) =
                    (gateways, policies.services, policies.deny_by_default, policies.trust_domains);
                wire::FederatorMessage { msg: Some(federator_message::Msg::Snapshot(part)) }
            }
        }
    }
}

/// The federator's side of one gateway session, as tonic sends it.
pub struct SessionStream(mpsc::Receiver<Result<Outgoing, Status>>);

impl Stream for SessionStream {
    type Item = Result<wire::FederatorMessage, Status>;

    fn poll_next(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Self::Item>> {
        self.0.poll_recv(cx).map(|o| o.map(|r| r.map(Outgoing::into_message)))
    }
}

/// Validates a Hello against the certificate's cluster (pure).
pub fn check_hello(hello: &wire::Hello, cert_cluster: &ClusterId) -> Result<(Cloud, String), Status> {
    if hello.cluster != cert_cluster.as_str() {
        return Err(Status::permission_denied(format!(
            "Hello claims cluster {:?} but the certificate names {cert_cluster}",
            hello.cluster
        )));
    }
    let cloud = hello.cloud.parse::<Cloud>().map_err(|e| Status::invalid_argument(format!("Hello.cloud: {e}")))?;
    let instance = if hello.instance.is_empty() { "default".to_owned() } else { hello.instance.clone() };
    if instance.len() > 253 || !instance.bytes().all(|b| b.is_ascii_alphanumeric() || b"-._".contains(&b)) {
        return Err(Status::invalid_argument(format!("Hello.instance {instance:?} is not a pod-like name")));
    }
    Ok((cloud, instance))
}

fn gateways_wire(state: &State) -> Vec<wire::Gateway> {
    let mut list: Vec<_> = state
        .gateways()
        .into_iter()
        .filter(|g| !g.record.tunnel_addresses.is_empty())
        .map(|g| wire::Gateway {
            cluster: g.record.cluster.to_string(),
            instance: g.record.instance,
            tunnel_addresses: g.record.tunnel_addresses,
        })
        .collect();
    list.sort_by(|a, b| (&a.cluster, &a.instance).cmp(&(&b.cluster, &b.instance)));
    list
}

fn delta(from: &GlobalCatalog, to: &GlobalCatalog) -> wire::FederatorMessage {
    wire::FederatorMessage { msg: Some(federator_message::Msg::Delta(delta_to_wire(&diff(from, to), None, None))) }
}

/// A delta that changes no service (it confirms `c`'s version, or carries a new gateway or
/// policy list): built directly, since diffing a catalog against itself would compare every
/// service.
fn no_change(
    c: &GlobalCatalog,
    gateways: Option<Vec<wire::Gateway>>,
    policies: Option<WirePolicies>,
) -> wire::FederatorMessage {
    let d = Delta { from_version: c.version, to_version: c.version, to_digest: c.digest, ..Delta::default() };
    wire::FederatorMessage { msg: Some(federator_message::Msg::Delta(delta_to_wire(&d, gateways, policies))) }
}

#[tonic::async_trait]
impl wire::control_server::Control for ControlService {
    type SessionStream = SessionStream;

    async fn session(
        &self,
        req: Request<Streaming<wire::GatewayMessage>>,
    ) -> Result<Response<Self::SessionStream>, Status> {
        let PeerCluster(cluster) = req
            .extensions()
            .get::<PeerCluster>()
            .cloned()
            .ok_or_else(|| Status::unauthenticated("no verified gateway certificate"))?;
        if !self.ready.load(std::sync::atomic::Ordering::Acquire) {
            return Err(Status::unavailable(
                "this federator replica has not read the catalog from its store yet; try another replica",
            ));
        }
        let mut inbound = req.into_inner();
        let first = tokio::time::timeout(self.limits.hello_timeout, inbound.message())
            .await
            .map_err(|_| Status::deadline_exceeded("no Hello within the hello timeout"))??;
        let Some(wire::GatewayMessage { msg: Some(gateway_message::Msg::Hello(hello)) }) = first else {
            return Err(Status::invalid_argument("the first message must be Hello"));
        };
        let (cloud, instance) = check_hello(&hello, &cluster).inspect_err(|e| {
            tracing::warn!(%cluster, error = %e.message(), "gateway rejected");
        })?;
        Ok(Response::new(self.start(cluster, cloud, instance, hello, inbound)))
    }
}

impl ControlService {
    /// Runs the session of a gateway whose identity and Hello were checked: `inbound` carries
    /// its messages after the Hello; the returned stream carries the federator's.
    pub(crate) fn start(
        &self,
        cluster: ClusterId,
        cloud: Cloud,
        instance: String,
        hello: wire::Hello,
        inbound: impl Stream<Item = Result<wire::GatewayMessage, Status>> + Unpin + Send + 'static,
    ) -> SessionStream {
        let (tx, rx) = mpsc::channel(self.limits.queue);
        let span = tracing::info_span!("gateway_session", %cluster, %instance);
        let session = Session {
            id: NEXT_SESSION.fetch_add(1, std::sync::atomic::Ordering::Relaxed),
            state: self.state.clone(),
            cluster,
            instance,
            cloud,
            tx,
            shutdown: self.shutdown.clone(),
            metrics: self.metrics.clone(),
            limits: self.limits,
        };
        self.tasks.spawn(session.run(hello, inbound).instrument(span));
        SessionStream(rx)
    }
}

/// Session ids, unique within the process (0 is "none").
static NEXT_SESSION: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);

struct Session {
    /// Only this session may change or end the gateway's entry: an older session of the same
    /// gateway may still be winding down (waiting for its keepalive) when it reconnects.
    id: u64,
    state: Arc<State>,
    cluster: ClusterId,
    instance: String,
    cloud: Cloud,
    tx: Outbound,
    shutdown: CancellationToken,
    metrics: Metrics,
    limits: ControlLimits,
}

impl Session {
    /// Queues `msg`; full and closed queues are reported, never waited on (a slow gateway
    /// must not hold the session back from noticing it is slow).
    fn push(&self, msg: wire::FederatorMessage) -> Pushed {
        let kind = match &msg.msg {
            Some(federator_message::Msg::Snapshot(_)) => "snapshot",
            _ => "delta",
        };
        match self.tx.try_send(Ok(Outgoing::Message(msg))) {
            Ok(()) => {
                self.metrics.control_messages.get_or_create(&KindLabels { kind }).inc();
                Pushed::Sent
            }
            Err(mpsc::error::TrySendError::Full(_)) => {
                self.metrics.gateways_lagging.inc();
                tracing::warn!("gateway is not keeping up; it will get a fresh snapshot");
                Pushed::Full
            }
            Err(mpsc::error::TrySendError::Closed(_)) => Pushed::Closed,
        }
    }

    async fn run(
        self,
        hello: wire::Hello,
        mut inbound: impl Stream<Item = Result<wire::GatewayMessage, Status>> + Unpin,
    ) {
        let key = (self.cluster.clone(), self.instance.clone());
        let now = now_millis();
        let mut record = None;
        self.state.update_local(key.clone(), true, |g| {
            g.session = self.id;
            // NACKs are counted per connection.
            g.nacks = 0;
            g.last_nack = None;
            g.record.version = hello.version.clone();
            g.record.tunnel_addresses = hello.tunnel_addresses.clone();
            g.record.last_seen = now;
            g.cloud = self.cloud.to_string();
            g.region = hello.region.clone();
            g.connected = true;
            g.connected_since = Some(now);
            record = Some(g.record.clone());
        });
        if let Some(r) = record
            && let Err(e) = self.state.store().put_gateway(&r).await
        {
            tracing::error!(error = %e, "persisting the gateway failed");
        }
        self.metrics.gateways_connected.inc();
        self.state.event("gateway_connected", format!("gateway {}/{} connected", self.cluster, self.instance)).await;

        let mut catalogs = self.state.watch_catalog();
        let mut gateways = self.state.watch_gateways();
        gateways.borrow_and_update();
        let mut policies = self.state.watch_policies();
        policies.borrow_and_update();
        let current = catalogs.borrow_and_update().catalog.clone();
        // Catch-up deltas must fit the queue with the confirmation after them.
        let max_deltas = self.limits.queue.saturating_sub(1);
        let (mut logic, opening) = self
            .state
            .with_history(|h| SessionLogic::open(hello.have_version, hello.have_digest, &current, h, max_deltas));
        let mut open = match opening {
            // Policies are not in the digest, so they go along whatever the gateway holds.
            Opening::Confirm => {
                let lists =
                    (Some(gateways_wire(&self.state)), Some(WirePolicies::clone(&policies.borrow_and_update())));
                self.push(no_change(&current, lists.0, lists.1)) != Pushed::Closed
            }
            Opening::CatchUp(deltas) => {
                tracing::info!(
                    from = hello.have_version,
                    to = current.version,
                    deltas = deltas.len(),
                    "gateway catches up with deltas"
                );
                let mut pushed = Pushed::Sent;
                for d in deltas {
                    pushed =
                        self.push(wire::FederatorMessage { msg: Some(federator_message::Msg::Delta((*d).clone())) });
                    if pushed != Pushed::Sent {
                        break; // the rest cannot be applied after a gap: a snapshot follows
                    }
                }
                if pushed == Pushed::Sent {
                    // Lists may have changed since those versions.
                    let lists =
                        (Some(gateways_wire(&self.state)), Some(WirePolicies::clone(&policies.borrow_and_update())));
                    pushed = self.push(no_change(&current, lists.0, lists.1));
                }
                logic.pushed(pushed, None)
            }
            Opening::Snapshot => true,
        };
        // Held from sending a snapshot until the gateway ACKs/NACKs it, or the ACK timeout.
        let mut permit: Option<tokio::sync::OwnedSemaphorePermit> = None;
        while open {
            let snapshot_due = logic.wants_snapshot(catalogs.borrow().catalog.version);
            let ack_deadline = logic.slot_deadline();
            tokio::select! {
                _ = self.shutdown.cancelled() => {
                    let _ = self.tx.try_send(Err(Status::unavailable("federator shutting down")));
                    break;
                }
                slot = self.snapshot_slot(), if snapshot_due => {
                    let current = catalogs.borrow_and_update().catalog.clone();
                    // Read now, so a change made before the snapshot is not pushed again after it.
                    let current_policies = WirePolicies::clone(&policies.borrow_and_update());
                    if !self.send_snapshot_in_time(&current, current_policies).await {
                        break;
                    }
                    self.metrics.control_messages.get_or_create(&KindLabels { kind: "snapshot" }).inc();
                    logic.snapshot_sent(current, tokio::time::Instant::now(), self.limits.snapshot_ack_timeout);
                    permit = Some(slot);
                }
                _ = sleep_until(ack_deadline), if ack_deadline.is_some() => {
                    if logic.on_tick(tokio::time::Instant::now()) {
                        // A gateway that never answers must not keep others from their snapshots.
                        tracing::warn!(
                            timeout = ?self.limits.snapshot_ack_timeout,
                            "gateway did not acknowledge its snapshot in time; giving its snapshot slot to others"
                        );
                        permit = None;
                    }
                }
                changed = catalogs.changed() => {
                    if changed.is_err() { break }
                    let published = catalogs.borrow_and_update().clone();
                    let msg = match logic.on_catalog(&published) {
                        None => continue,
                        // The common case: one shared delta, computed once for all sessions.
                        Some(Update::Shared(d)) => wire::FederatorMessage { msg: Some(federator_message::Msg::Delta((*d).clone())) },
                        Some(Update::Diff { from, to }) => delta(&from, &to),
                    };
                    open = logic.pushed(self.push(msg), Some(published.catalog));
                }
                changed = gateways.changed() => {
                    if changed.is_err() { break }
                    if logic.wants_lists() {
                        open = logic.pushed(self.push(no_change(logic.sent(), Some(gateways_wire(&self.state)), None)), None);
                    }
                }
                changed = policies.changed() => {
                    if changed.is_err() { break }
                    let current_policies = WirePolicies::clone(&policies.borrow_and_update());
                    if logic.wants_lists() {
                        open = logic.pushed(self.push(no_change(logic.sent(), None, Some(current_policies))), None);
                    }
                }
                msg = inbound.next() => match msg {
                    Some(Ok(m)) => {
                        let answer = match &m.msg {
                            Some(gateway_message::Msg::Ack(_)) => Some(false),
                            Some(gateway_message::Msg::Nack(_)) => Some(true),
                            _ => None,
                        };
                        if let Some(rejected) = answer
                            && logic.on_answer(rejected)
                        {
                            permit = None;
                        }
                        for e in self.on_message(m) {
                            self.state.event(e.kind, e.message).await;
                        }
                    }
                    None => break,
                    Some(Err(e)) => {
                        tracing::info!(error = %e, "gateway stream ended");
                        break;
                    }
                },
            }
        }
        drop(permit);
        self.metrics.gateways_connected.dec();
        let mut record = None;
        self.state.update_local(key, false, |g| {
            if g.session != self.id {
                return; // the gateway has a newer session: it stays connected
            }
            g.session = 0;
            g.connected = false;
            g.record.last_seen = now_millis();
            record = Some(g.record.clone());
        });
        // Its last-seen time is where gateway expiry counts from.
        if let Some(r) = record
            && let Err(e) = self.state.store().put_gateway(&r).await
        {
            tracing::warn!(error = %e, "recording the gateway's last-seen time failed");
        }
        self.state
            .event("gateway_disconnected", format!("gateway {}/{} disconnected", self.cluster, self.instance))
            .await;
    }

    /// Sends a whole snapshot within the send timeout; false (and the session must end) when
    /// the gateway did not take it in time or the stream is gone.
    async fn send_snapshot_in_time(&self, c: &GlobalCatalog, policies: WirePolicies) -> bool {
        let send = tokio::time::timeout(self.limits.snapshot_send_timeout, self.send_snapshot(c, policies));
        tokio::select! {
            _ = self.shutdown.cancelled() => false,
            sent = send => match sent {
                Ok(ok) => ok,
                Err(_) => {
                    // Half a snapshot cannot be taken back: close the session, and the gateway
                    // starts over with a new one after it reconnects.
                    tracing::warn!(
                        timeout = ?self.limits.snapshot_send_timeout,
                        "gateway did not read its snapshot in time; closing its session"
                    );
                    self.metrics.gateways_lagging.inc();
                    let _ = self.tx.try_send(Err(Status::deadline_exceeded(
                        "snapshot not read within limits.snapshot_send_timeout",
                    )));
                    false
                }
            },
        }
    }

    /// Sends every part of `c`'s snapshot with `policies`, waiting for queue space (the gateway
    /// reads them in order); false when the stream is gone.
    async fn send_snapshot(&self, c: &GlobalCatalog, policies: WirePolicies) -> bool {
        let parts = self.state.snapshot_for(c);
        // The gateway and policy lists change without a new catalog version (so they are not
        // in the cached parts); they ride in the first part.
        let mut lists = Some((gateways_wire(&self.state), policies));
        for index in 0..parts.len() {
            let part = Outgoing::Part { parts: parts.clone(), index, lists: lists.take() };
            if self.tx.send(Ok(part)).await.is_err() {
                return false;
            }
        }
        true
    }

    async fn snapshot_slot(&self) -> tokio::sync::OwnedSemaphorePermit {
        self.state.snapshot_permit().await
    }

    /// Records what one gateway message says (ACK/NACK bookkeeping and measurement reports).
    /// Applies one message from the gateway; returns the path events a report made.
    fn on_message(&self, m: wire::GatewayMessage) -> Vec<PathEvent> {
        let key = (self.cluster.clone(), self.instance.clone());
        match m.msg {
            Some(gateway_message::Msg::Ack(a)) => {
                self.state.update_local(key, false, |g| {
                    if g.session == self.id {
                        g.record.acked_version = a.version;
                        g.record.last_seen = now_millis();
                    }
                });
            }
            Some(gateway_message::Msg::Nack(n)) => {
                tracing::warn!(version = n.version, reason = %n.reason, "gateway rejected an update");
                self.state.update_local(key, false, |g| {
                    if g.session == self.id {
                        g.nacks += 1;
                        g.last_nack = Some(n.reason.clone());
                    }
                });
            }
            Some(gateway_message::Msg::Report(r)) => {
                let samples: Vec<PeerReport> = r
                    .peers
                    .into_iter()
                    .filter_map(|p| {
                        let to = ClusterId::new(&p.cluster).ok()?;
                        let ms = |micros: u64| (micros > 0).then(|| micros as f64 / 1000.0);
                        // Older gateways send no transport: they only speak QUIC.
                        let transport = if p.transport.is_empty() { "quic".to_owned() } else { p.transport };
                        Some(PeerReport {
                            to,
                            rtt_ms: ms(p.rtt_micros),
                            rank_rtt_ms: ms(p.rank_rtt_micros),
                            state: p.state,
                            transport,
                            transport_for_s: (p.transport_seconds > 0).then_some(p.transport_seconds),
                        })
                    })
                    .collect();
                let peers = samples
                    .iter()
                    .map(|s| PeerSample {
                        to: s.to.clone(),
                        rtt_ms: s.rtt_ms,
                        rank_rtt_ms: s.rank_rtt_ms,
                        state: s.state.clone(),
                        transport: s.transport.clone(),
                        transport_for_s: s.transport_for_s,
                    })
                    .collect();
                let events = self.state.report_latency(&self.cluster, &self.instance, samples);
                let traffic = r
                    .traffic
                    .into_iter()
                    .map(|t| {
                        let entry = Entry { service: t.service, cluster: t.cluster, transport: t.transport };
                        let c = Counters {
                            ok: t.ok,
                            failed: t.failed,
                            retried: t.retried,
                            bytes_up: t.bytes_up,
                            bytes_down: t.bytes_down,
                            open_buckets: t.open_buckets,
                        };
                        (entry, c)
                    })
                    .collect();
                self.state.report_traffic(key.clone(), r.traffic_since_ms, traffic);
                let proofs = r
                    .proofs
                    .into_iter()
                    .map(|p| crate::api::dto::ProofDto {
                        service: p.service,
                        port: u16::try_from(p.port).unwrap_or(0),
                        from: self.cluster.to_string(),
                        to: p.cluster,
                        ok: p.ok,
                        at: p.at_ms,
                        error: (!p.error.is_empty()).then_some(p.error),
                        took_ms: (p.took_micros > 0).then(|| p.took_micros as f64 / 1000.0),
                        by: self.instance.clone(),
                    })
                    .collect();
                self.state.report_proofs(key.clone(), proofs);
                self.state.update_local(key, false, |g| {
                    if g.session == self.id {
                        g.last_report = Some(now_millis());
                        g.peers = peers;
                    }
                });
                return events;
            }
            Some(gateway_message::Msg::Hello(_)) | None => {}
        }
        Vec::new()
    }
}

/// Sleeps until `at`; never completes without one (the caller guards the branch anyway).
async fn sleep_until(at: Option<tokio::time::Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hello(cluster: &str) -> wire::Hello {
        wire::Hello { cluster: cluster.into(), cloud: "aws".into(), instance: "gw-0".into(), ..Default::default() }
    }

    #[test]
    fn hello_must_match_the_certificate() {
        let cert = ClusterId::new("aws-1").unwrap();
        assert!(check_hello(&hello("aws-1"), &cert).is_ok());
        let e = check_hello(&hello("gcp-1"), &cert).unwrap_err();
        assert_eq!(e.code(), tonic::Code::PermissionDenied);
        assert!(e.message().contains("gcp-1") && e.message().contains("aws-1"));
        let mut bad_cloud = hello("aws-1");
        bad_cloud.cloud = "ibm".into();
        assert_eq!(check_hello(&bad_cloud, &cert).unwrap_err().code(), tonic::Code::InvalidArgument);
        let mut bad_instance = hello("aws-1");
        bad_instance.instance = "a b".into();
        assert_eq!(check_hello(&bad_instance, &cert).unwrap_err().code(), tonic::Code::InvalidArgument);
    }
}
