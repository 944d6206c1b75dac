//! Taking back the slots of connections that have not proved anything yet. At the connection
//! cap, a new socket takes the slot of the oldest connection that is still evictable (its TLS
//! handshake unfinished, or not one byte of a request sent), as nginx reuses connections waiting
//! for a request. A flood of silent sockets then only churns through its own slots; a client
//! that did its part keeps its slot.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use tokio::sync::OwnedSemaphorePermit;
use tokio_util::sync::CancellationToken;

use super::Activity;

/// One connection's slot, which the connection holds until it ends or a newer socket takes it.
#[derive(Debug, Clone)]
pub struct Slot {
    permit: Arc<Mutex<Option<OwnedSemaphorePermit>>>,
    evicted: CancellationToken,
}

impl Slot {
    /// A slot holding `permit`.
    pub fn new(permit: OwnedSemaphorePermit) -> Self {
        Self { permit: Arc::new(Mutex::new(Some(permit))), evicted: CancellationToken::new() }
    }

    /// Takes the permit back (the connection is no longer evictable, or has ended); `None` when a
    /// newer socket already took it.
    pub fn claim(&self) -> Option<OwnedSemaphorePermit> {
        self.permit.lock().expect("slot lock").take()
    }

    /// Cancelled when a newer socket took this slot.
    pub fn evicted(&self) -> &CancellationToken {
        &self.evicted
    }

    fn held(&self) -> bool {
        self.permit.lock().expect("slot lock").is_some()
    }
}

/// Evictable connections, oldest first, as one accept loop sees them. Both conditions that end
/// evictability (the slot claimed, a byte read) never revert, so an entry found not evictable
/// is dropped for good.
#[derive(Debug)]
pub struct Evictions {
    queue: VecDeque<(Slot, Option<Arc<Activity>>)>,
    /// At most `max_connections` entries hold a slot, so twice that bounds the queue.
    prune_at: usize,
}

impl Evictions {
    /// For a server of at most `max_connections` connections.
    pub fn new(max_connections: usize) -> Self {
        Self { queue: VecDeque::new(), prune_at: max_connections.saturating_mul(2).max(2) }
    }

    /// Registers a new connection, evictable while its slot is held and, when `activity` is
    /// given, while it has read nothing.
    pub fn push(&mut self, slot: Slot, activity: Option<Arc<Activity>>) {
        if self.queue.len() >= self.prune_at {
            self.queue.retain(|(s, a)| evictable(s, a.as_deref()));
        }
        self.queue.push_back((slot, activity));
    }

    /// Takes the slot of the oldest evictable connection and tells it to close.
    pub fn evict_oldest(&mut self) -> Option<OwnedSemaphorePermit> {
        while let Some((slot, activity)) = self.queue.pop_front() {
            if activity.as_ref().is_some_and(|a| a.bytes_read() > 0) {
                continue;
            }
            if let Some(permit) = slot.claim() {
                slot.evicted.cancel();
                return Some(permit);
            }
        }
        None
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.queue.len()
    }
}

fn evictable(slot: &Slot, activity: Option<&Activity>) -> bool {
    slot.held() && activity.is_none_or(|a| a.bytes_read() == 0)
}

#[cfg(test)]
mod tests {
    use tokio::io::AsyncWriteExt;
    use tokio::sync::Semaphore;

    use super::*;
    use crate::serve::IdleIo;

    fn slot(slots: &Arc<Semaphore>) -> Slot {
        Slot::new(slots.clone().try_acquire_owned().unwrap())
    }

    #[test]
    fn the_oldest_evictable_slot_is_taken_and_finished_ones_skipped() {
        let slots = Arc::new(Semaphore::new(3));
        let mut ev = Evictions::new(3);
        let s: Vec<_> = (0..3).map(|_| slot(&slots)).collect();
        for x in &s {
            ev.push(x.clone(), None);
        }
        // The oldest finished its handshake: it took its slot back.
        assert!(s[0].claim().is_some());
        let taken = ev.evict_oldest().expect("a pending connection to evict");
        assert!(!s[0].evicted().is_cancelled(), "a finished handshake is never cancelled");
        assert!(s[1].evicted().is_cancelled() && s[1].claim().is_none());
        assert!(!s[2].evicted().is_cancelled());
        drop(taken);
        assert!(ev.evict_oldest().is_some() && s[2].evicted().is_cancelled());
        assert!(ev.evict_oldest().is_none(), "nothing left to evict");
    }

    #[tokio::test]
    async fn a_connection_that_read_a_byte_is_never_evicted() {
        let slots = Arc::new(Semaphore::new(2));
        let mut ev = Evictions::new(2);
        let (talker, silent) = (slot(&slots), slot(&slots));
        let activity = Activity::new();
        let (mut client, server) = tokio::io::duplex(64);
        let mut io = IdleIo::new(server, activity.clone());
        ev.push(talker.clone(), Some(activity));
        ev.push(silent.clone(), Some(Activity::new()));
        client.write_all(b"G").await.unwrap();
        let mut b = [0u8; 1];
        tokio::io::AsyncReadExt::read_exact(&mut io, &mut b).await.unwrap();

        assert!(ev.evict_oldest().is_some());
        assert!(!talker.evicted().is_cancelled() && silent.evicted().is_cancelled());
        assert!(ev.evict_oldest().is_none());
    }

    #[test]
    fn the_queue_is_pruned_to_the_connections_still_evictable() {
        let slots = Arc::new(Semaphore::new(2));
        let mut ev = Evictions::new(2);
        for _ in 0..10 {
            let s = slot(&slots);
            ev.push(s.clone(), None);
            drop(s.claim());
        }
        assert!(ev.len() <= 4, "{}", ev.len());
    }
}
