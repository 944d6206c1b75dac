//! Gateway records are presence, not history: a gateway connected to no replica for
//! `gateway_expiry` is removed, so rollouts leave no dead pods behind for peers to dial or for
//! `skybridge check` to flag. Pure: the leader feeds it what it sees and the time.

use std::collections::HashMap;
use std::time::Duration;

use skybridge_api::catalog::UnixMillis;

use crate::state::GatewayKey;

/// How long each gateway has been seen disconnected by this leader.
#[derive(Debug, Default)]
pub struct Expiry {
    absent_since: HashMap<GatewayKey, UnixMillis>,
}

/// One known gateway as the leader sees it.
#[derive(Debug, Clone)]
pub struct Seen {
    pub key: GatewayKey,
    /// Connected to some replica right now.
    pub connected: bool,
    /// When a replica last saw it (connect, ACK, disconnect).
    pub last_seen: UnixMillis,
}

impl Expiry {
    /// The gateways to remove at `now`: those absent for `expiry`, counting from the later of
    /// their last-seen time and when this leader first saw them absent. A leader that just took
    /// over therefore waits a whole `expiry` before removing anything, whatever the records
    /// say: it cannot know how long they were really gone.
    pub fn due(&mut self, gateways: &[Seen], now: UnixMillis, expiry: Duration) -> Vec<GatewayKey> {
        let expiry = u64::try_from(expiry.as_millis()).unwrap_or(u64::MAX);
        let mut due = Vec::new();
        let mut still_absent = HashMap::new();
        for g in gateways {
            if g.connected {
                continue;
            }
            let first = self.absent_since.get(&g.key).copied().unwrap_or(now);
            let since = first.max(g.last_seen);
            if now.saturating_sub(since) >= expiry {
                due.push(g.key.clone());
            }
            still_absent.insert(g.key.clone(), first);
        }
        self.absent_since = still_absent;
        due
    }
}

#[cfg(test)]
mod tests {
    use skybridge_api::model::ClusterId;

    use super::*;

    fn seen(instance: &str, connected: bool, last_seen: UnixMillis) -> Seen {
        Seen { key: (ClusterId::new("aws-1").unwrap(), instance.into()), connected, last_seen }
    }

    const TEN_MIN: Duration = Duration::from_secs(600);

    #[test]
    fn a_gateway_gone_for_the_expiry_is_removed_and_a_connected_one_never() {
        let mut e = Expiry::default();
        let t0 = 1_000_000;
        // The old pod disconnected long ago by its record, but this leader only now sees it.
        let all = [seen("old-pod", false, 0), seen("new-pod", true, t0)];
        assert!(e.due(&all, t0, TEN_MIN).is_empty(), "a new leader waits a whole expiry");
        assert!(e.due(&all, t0 + 599_999, TEN_MIN).is_empty());
        let due = e.due(&all, t0 + 600_000, TEN_MIN);
        assert_eq!(due, vec![all[0].key.clone()]);
    }

    #[test]
    fn reconnecting_starts_the_count_over() {
        let mut e = Expiry::default();
        let g = |connected, last_seen| [seen("gw", connected, last_seen)];
        assert!(e.due(&g(false, 0), 0, TEN_MIN).is_empty());
        assert!(e.due(&g(true, 300_000), 300_000, TEN_MIN).is_empty(), "back for a while");
        assert!(e.due(&g(false, 400_000), 400_000, TEN_MIN).is_empty());
        assert!(e.due(&g(false, 400_000), 999_999, TEN_MIN).is_empty(), "counted from the new absence");
        assert_eq!(e.due(&g(false, 400_000), 1_000_000, TEN_MIN).len(), 1);
        // A last-seen newer than this leader's first sighting (a reconnect it missed) counts.
        let mut e = Expiry::default();
        assert!(e.due(&g(false, 0), 0, TEN_MIN).is_empty());
        assert!(e.due(&g(false, 500_000), 600_000, TEN_MIN).is_empty());
    }
}
