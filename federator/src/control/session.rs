//! One gateway session's decisions, pure: what the gateway holds, whether it needs a snapshot,
//! when its snapshot slot is given back. Events and time come in as arguments; what to send
//! comes out. The I/O shell (`super::Session::run`) performs it and reports back how a push
//! went, so every path (lag, NACK, ACK timeout, catch-up after a reconnect) is unit-tested
//! without sockets.

use std::sync::Arc;
use std::time::Duration;

use skybridge_api::catalog::GlobalCatalog;
use skybridge_api::proto::wire;
use tokio::time::Instant;

use crate::state::{History, Published};

/// How the session opens, from what the gateway's Hello says it holds.
#[derive(Debug, Clone, PartialEq)]
pub enum Opening {
    /// The gateway holds the current version: confirm it with an empty delta (carrying the
    /// gateway and policy lists, which are not in the digest).
    Confirm,
    /// The gateway holds a recent version: these deltas, in order, bring it to the current one.
    CatchUp(Vec<Arc<wire::Delta>>),
    /// Anything else: a snapshot, once a slot is free.
    Snapshot,
}

/// A catalog change to send.
#[derive(Debug, Clone, PartialEq)]
pub enum Update {
    /// The delta computed once for every session at the previous version.
    Shared(Arc<wire::Delta>),
    /// This session was further behind: diff what it holds against the new catalog.
    Diff { from: Arc<GlobalCatalog>, to: Arc<GlobalCatalog> },
}

/// How a queued message fared.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pushed {
    Sent,
    /// The gateway's queue is full: it is not keeping up.
    Full,
    /// The stream is gone.
    Closed,
}

/// The session's state.
#[derive(Debug)]
pub struct SessionLogic {
    /// What the gateway holds once every queued message has arrived.
    sent: Arc<GlobalCatalog>,
    /// The next catalog message must be a snapshot (first contact, NACK, lagging).
    needs_snapshot: bool,
    /// While a snapshot waits for its ACK: when the slot must be given back regardless.
    slot_until: Option<Instant>,
}

impl SessionLogic {
    /// Opens a session for a gateway holding `(have_version, have_digest)` while `current` is
    /// served and `history` holds the recent deltas; a catch-up longer than `max_deltas` (what
    /// the queue takes at once) is a snapshot instead.
    pub fn open(
        have_version: u64,
        have_digest: u64,
        current: &Arc<GlobalCatalog>,
        history: &History,
        max_deltas: usize,
    ) -> (Self, Opening) {
        let mut logic = SessionLogic { sent: current.clone(), needs_snapshot: false, slot_until: None };
        if current.version == 0 {
            // Nothing to serve yet: the snapshot goes out once there is a catalog.
            logic.needs_snapshot = true;
            return (logic, Opening::Snapshot);
        }
        if have_version == current.version && have_digest == current.digest {
            return (logic, Opening::Confirm);
        }
        match history.chain(have_version, have_digest, current) {
            Some(deltas) if !deltas.is_empty() && deltas.len() <= max_deltas => (logic, Opening::CatchUp(deltas)),
            _ => {
                logic.needs_snapshot = true;
                (logic, Opening::Snapshot)
            }
        }
    }

    /// What the gateway holds (as far as the queued messages go).
    pub fn sent(&self) -> &Arc<GlobalCatalog> {
        &self.sent
    }

    /// Whether a snapshot should be sent now (given a slot): one is needed, none is awaiting an
    /// answer, and there is a catalog (version 0 is "nothing yet").
    pub fn wants_snapshot(&self, current_version: u64) -> bool {
        self.needs_snapshot && self.slot_until.is_none() && current_version != 0
    }

    /// A new catalog was published: the update to queue, or None while a snapshot is due
    /// (it will carry the new version).
    pub fn on_catalog(&self, published: &Published) -> Option<Update> {
        if self.needs_snapshot
            || published.catalog.version == self.sent.version && published.catalog.digest == self.sent.digest
        {
            return None;
        }
        Some(match &published.delta_from_previous {
            Some(d) if d.from_version == self.sent.version && published.previous_digest == self.sent.digest => {
                Update::Shared(d.clone())
            }
            _ => Update::Diff { from: self.sent.clone(), to: published.catalog.clone() },
        })
    }

    /// Whether a changed gateway or policy list should be pushed now (a snapshot that is due
    /// carries the lists anyway).
    pub fn wants_lists(&self) -> bool {
        !self.needs_snapshot
    }

    /// How queuing a message carrying `catalog` (None: only lists) went; false when the
    /// session must end.
    pub fn pushed(&mut self, outcome: Pushed, catalog: Option<Arc<GlobalCatalog>>) -> bool {
        match outcome {
            Pushed::Sent => {
                if let Some(c) = catalog {
                    self.sent = c;
                }
                true
            }
            Pushed::Full => {
                // Skipped messages cannot be replayed: the gateway starts over from a snapshot.
                self.needs_snapshot = true;
                true
            }
            Pushed::Closed => false,
        }
    }

    /// A whole snapshot of `catalog` was queued at `now`: its slot is held until the gateway
    /// answers or `ack_timeout` passes.
    pub fn snapshot_sent(&mut self, catalog: Arc<GlobalCatalog>, now: Instant, ack_timeout: Duration) {
        self.sent = catalog;
        self.needs_snapshot = false;
        self.slot_until = Some(now + ack_timeout);
    }

    /// When the held slot must be given back, if one is held.
    pub fn slot_deadline(&self) -> Option<Instant> {
        self.slot_until
    }

    /// The gateway answered (ACK, or NACK when `rejected`): the slot is free; a NACK asks for a
    /// snapshot. Returns whether a slot was held.
    pub fn on_answer(&mut self, rejected: bool) -> bool {
        if rejected {
            self.needs_snapshot = true;
        }
        self.slot_until.take().is_some()
    }

    /// Time passed: true when the slot must be given back now (the gateway never answered; it
    /// must not keep others from their snapshots). The session itself goes on.
    pub fn on_tick(&mut self, now: Instant) -> bool {
        match self.slot_until {
            Some(until) if now >= until => {
                self.slot_until = None;
                true
            }
            _ => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use skybridge_api::catalog::{Delta, diff};
    use skybridge_api::proto::delta_to_wire;

    use super::*;

    fn cat(version: u64, digest: u64) -> Arc<GlobalCatalog> {
        Arc::new(GlobalCatalog { version, digest, ..GlobalCatalog::default() })
    }

    fn published(prev: &Arc<GlobalCatalog>, next: &Arc<GlobalCatalog>) -> Published {
        let d = Arc::new(delta_to_wire(&diff(prev, next), None, None));
        Published { catalog: next.clone(), delta_from_previous: Some(d), previous_digest: prev.digest }
    }

    fn history(cats: &[Arc<GlobalCatalog>]) -> History {
        let mut h = History::new(8);
        for w in cats.windows(2) {
            h.push(&published(&w[0], &w[1]));
        }
        h
    }

    #[test]
    fn an_up_to_date_gateway_is_confirmed_and_a_new_one_snapshotted() {
        let v3 = cat(3, 33);
        let (s, o) = SessionLogic::open(3, 33, &v3, &History::new(8), 63);
        assert_eq!(o, Opening::Confirm);
        assert!(!s.wants_snapshot(3));
        let (s, o) = SessionLogic::open(0, 0, &v3, &History::new(8), 63);
        assert_eq!(o, Opening::Snapshot);
        assert!(s.wants_snapshot(3));
        // Same version, other content (another federation, or a lost write): snapshot.
        assert_eq!(SessionLogic::open(3, 99, &v3, &History::new(8), 63).1, Opening::Snapshot);
        // Nothing to serve yet: wait.
        let (s, _) = SessionLogic::open(0, 0, &cat(0, 0), &History::new(8), 63);
        assert!(!s.wants_snapshot(0) && s.wants_snapshot(1));
    }

    #[test]
    fn a_gateway_from_another_replica_catches_up_with_deltas() {
        let cats = [cat(1, 11), cat(2, 22), cat(3, 33)];
        let h = history(&cats);
        let (s, o) = SessionLogic::open(1, 11, &cats[2], &h, 63);
        let Opening::CatchUp(deltas) = o else { panic!("{o:?}") };
        assert_eq!(deltas.iter().map(|d| (d.from_version, d.to_version)).collect::<Vec<_>>(), [(1, 2), (2, 3)]);
        assert!(!s.wants_snapshot(3));
        assert_eq!(s.sent().version, 3);
        // Its version with another digest, or one older than the history: snapshot.
        assert_eq!(SessionLogic::open(1, 12, &cats[2], &h, 63).1, Opening::Snapshot);
        assert_eq!(SessionLogic::open(1, 11, &cats[2], &h, 1).1, Opening::Snapshot, "more deltas than the queue takes");
        assert_eq!(SessionLogic::open(0, 0, &cats[2], &h, 63).1, Opening::Snapshot);
        // A gateway holding nothing never gets deltas, even from a history starting at nothing.
        let from_nothing = history(&[cat(0, 0), cats[0].clone(), cats[1].clone()]);
        assert_eq!(SessionLogic::open(0, 0, &cats[1], &from_nothing, 63).1, Opening::Snapshot);
    }

    #[test]
    fn deltas_follow_the_shared_path_or_are_diffed() {
        let (v1, v2, v3) = (cat(1, 11), cat(2, 22), cat(3, 33));
        let (mut s, _) = SessionLogic::open(1, 11, &v1, &History::new(8), 63);
        let Some(Update::Shared(d)) = s.on_catalog(&published(&v1, &v2)) else { panic!() };
        assert_eq!((d.from_version, d.to_version), (1, 2));
        assert!(s.pushed(Pushed::Sent, Some(v2.clone())));
        // A published version this session skipped: it diffs from what it holds.
        let mut skipped = published(&v1, &v3);
        skipped.previous_digest = 11;
        let (s2, _) = SessionLogic::open(2, 22, &v2, &History::new(8), 63);
        assert!(matches!(s2.on_catalog(&skipped), Some(Update::Diff { .. })));
        assert!(s.on_catalog(&published(&v1, &v2)).is_none(), "already holds it");
    }

    #[test]
    fn a_full_queue_and_a_nack_lead_to_a_snapshot_and_a_closed_stream_ends() {
        let (v1, v2) = (cat(1, 11), cat(2, 22));
        let (mut s, _) = SessionLogic::open(1, 11, &v1, &History::new(8), 63);
        assert!(s.pushed(Pushed::Full, Some(v2.clone())));
        assert!(s.wants_snapshot(2));
        assert!(s.on_catalog(&published(&v1, &v2)).is_none(), "the snapshot will carry it");
        assert!(!s.wants_lists());
        let now = Instant::now();
        s.snapshot_sent(v2.clone(), now, Duration::from_secs(30));
        assert!(!s.wants_snapshot(2), "one snapshot in flight");
        assert!(s.on_answer(true), "the NACK frees the slot");
        assert!(s.wants_snapshot(2), "and asks for another");
        assert!(!s.pushed(Pushed::Closed, None));
    }

    #[test]
    fn an_unanswered_snapshot_gives_its_slot_back_after_the_ack_timeout() {
        let v1 = cat(1, 11);
        let (mut s, _) = SessionLogic::open(0, 0, &v1, &History::new(8), 63);
        let t0 = Instant::now();
        s.snapshot_sent(v1.clone(), t0, Duration::from_secs(30));
        assert_eq!(s.slot_deadline(), Some(t0 + Duration::from_secs(30)));
        assert!(!s.on_tick(t0 + Duration::from_secs(29)));
        assert!(s.on_tick(t0 + Duration::from_secs(30)));
        assert!(s.slot_deadline().is_none());
        assert!(!s.on_answer(false), "a late ACK finds no slot to free");
        assert!(!s.wants_snapshot(1), "the session goes on without another snapshot");
    }

    #[test]
    fn history_is_bounded() {
        let cats: Vec<_> = (1..=20).map(|v| cat(v, v * 11)).collect();
        let mut h = History::new(4);
        for w in cats.windows(2) {
            h.push(&published(&w[0], &w[1]));
        }
        assert!(h.chain(16, 176, &cats[19]).is_some());
        assert!(h.chain(15, 165, &cats[19]).is_none(), "older than the kept deltas");
        let _ = Delta::default();
    }
}
