//! Which federator replica to try next. Every (re)connect resolves all configured addresses;
//! the order rotates from a random start so that gateways spread over the replicas, and a
//! replica that just failed goes to the back so the next attempt reaches another one. Pure: the
//! random start comes in as an argument and the shell reports what happened.

use std::net::SocketAddr;

/// The rotation state of one gateway, kept across connect rounds.
#[derive(Debug, Clone)]
pub(super) struct Rotation {
    /// Where the next round starts in the sorted address list; moves by one each round.
    cursor: usize,
    /// Replicas that failed (connect refused, stream broken), oldest failure first.
    failed: Vec<SocketAddr>,
}

impl Rotation {
    /// Starts at `start` (random, so gateways do not all pick the same first replica).
    pub(super) fn new(start: usize) -> Rotation {
        Rotation { cursor: start, failed: Vec::new() }
    }

    /// The order to try `resolved` in this round: duplicates removed, rotated from the cursor,
    /// replicas without a recent failure first, then the failed ones, the most recent failure
    /// last.
    pub(super) fn plan(&mut self, resolved: &[SocketAddr]) -> Vec<SocketAddr> {
        let mut all = resolved.to_vec();
        // Sorted so that the rotation is stable whatever order DNS answers in.
        all.sort();
        all.dedup();
        // Forget replicas that are no longer there, so the list stays as small as the set.
        self.failed.retain(|a| all.contains(a));
        if all.is_empty() {
            return all;
        }
        let start = self.cursor % all.len();
        self.cursor = self.cursor.wrapping_add(1);
        all.rotate_left(start);
        let mut order: Vec<SocketAddr> = all.iter().filter(|a| !self.failed.contains(a)).copied().collect();
        order.extend(self.failed.iter().copied());
        order
    }

    /// Records that `addr` failed (no session, or its stream broke): it goes to the back of the
    /// next rounds, behind replicas that failed earlier.
    pub(super) fn failed(&mut self, addr: SocketAddr) {
        self.failed.retain(|a| *a != addr);
        self.failed.push(addr);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn a(port: u16) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], port))
    }

    #[test]
    fn rounds_rotate_from_the_start_over_sorted_unique_addresses() {
        let mut r = Rotation::new(1);
        let resolved = [a(3), a(1), a(2), a(1)];
        assert_eq!(r.plan(&resolved), vec![a(2), a(3), a(1)]);
        assert_eq!(r.plan(&resolved), vec![a(3), a(1), a(2)]);
        assert_eq!(r.plan(&[a(2), a(3), a(1)]), vec![a(1), a(2), a(3)], "DNS order does not matter");
        assert!(r.plan(&[]).is_empty());
    }

    #[test]
    fn different_starts_spread_gateways_over_replicas() {
        let resolved = [a(1), a(2), a(3)];
        let firsts: Vec<SocketAddr> = (0..3).map(|s| Rotation::new(s).plan(&resolved)[0]).collect();
        assert_eq!(firsts, vec![a(1), a(2), a(3)]);
        assert_eq!(Rotation::new(usize::MAX).plan(&resolved).len(), 3, "any start is fine");
    }

    #[test]
    fn a_replica_that_just_failed_is_tried_last() {
        let mut r = Rotation::new(0);
        let resolved = [a(1), a(2), a(3)];
        r.failed(a(1));
        assert_eq!(r.plan(&resolved), vec![a(2), a(3), a(1)]);
        // Both 2 and 1 failed; 2 failed most recently, so it goes after 1.
        r.failed(a(2));
        assert_eq!(r.plan(&resolved), vec![a(3), a(1), a(2)]);
        r.failed(a(1));
        assert_eq!(r.plan(&resolved), vec![a(3), a(2), a(1)]);
        // A replica that fails again moves behind the others, wherever it was.
        r.failed(a(3));
        assert_eq!(r.plan(&resolved), vec![a(2), a(1), a(3)]);
    }

    #[test]
    fn with_one_replica_it_is_always_tried_and_gone_replicas_are_forgotten() {
        let mut r = Rotation::new(7);
        r.failed(a(1));
        assert_eq!(r.plan(&[a(1)]), vec![a(1)], "a failed only replica is still tried");
        r.failed(a(9));
        assert_eq!(r.plan(&[a(1), a(2)]).last(), Some(&a(1)));
        assert_eq!(r.failed, vec![a(1)], "9 is no longer resolved");
    }
}
