//! Leadership on an etcd lease, pure: what the replica should do next from what it learned and
//! the time. The shell (`super::Replica`) performs the actions and reports the outcomes.
//!
//! A replica holds one lease, refreshed every third of its TTL. It leads while its leader key
//! exists, and stops acting as leader as soon as its lease *may* have expired: the lease runs
//! at least `ttl` from when the last successful refresh was sent, so past that instant another
//! replica may lead. That is only an optimisation: every leader write is fenced in etcd, so a
//! replica that believes it leads a moment too long still cannot write.

use std::time::Duration;

use tokio::time::Instant;

use crate::store::etcd::records::Role;

/// What the replica should do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Get a new lease (there is none, or it expired).
    Grant,
    /// Try to take the leader key with the lease.
    Campaign(i64),
    /// Start the leader's work, fenced by `term`.
    Lead(i64),
    /// Stop the leader's work (with why, for the log and the event).
    StepDown(&'static str),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Lease {
    id: i64,
    /// The lease is alive at least until then.
    valid_until: Instant,
}

/// The election's state.
#[derive(Debug, Clone)]
pub struct Election {
    ttl: Duration,
    lease: Option<Lease>,
    /// The term this replica leads in.
    term: Option<i64>,
    /// The leader key as last seen: (holder, term); None when nobody leads.
    leader: Option<(String, i64)>,
    /// A grant request is in flight or due.
    granting: bool,
}

impl Election {
    /// A replica with no lease yet: its first action is [`Action::Grant`].
    pub fn new(ttl: Duration) -> (Election, Vec<Action>) {
        (Election { ttl, lease: None, term: None, leader: None, granting: true }, vec![Action::Grant])
    }

    /// The role the API shows.
    pub fn role(&self) -> Role {
        match (self.term, self.lease) {
            (Some(_), _) => Role::Leader,
            (None, Some(_)) => Role::Follower,
            (None, None) => Role::Degraded,
        }
    }

    /// The lease to attach own keys to.
    pub fn lease(&self) -> Option<i64> {
        self.lease.map(|l| l.id)
    }

    /// The term this replica leads in.
    pub fn term(&self) -> Option<i64> {
        self.term
    }

    /// How often to refresh the lease.
    pub fn keepalive_interval(&self) -> Duration {
        self.ttl / 3
    }

    fn campaign_if_free(&self) -> Vec<Action> {
        match (self.lease, &self.leader, self.term) {
            (Some(l), None, None) => vec![Action::Campaign(l.id)],
            _ => Vec::new(),
        }
    }

    /// A grant requested at `sent_at` returned lease `id`.
    pub fn granted(&mut self, id: i64, sent_at: Instant) -> Vec<Action> {
        self.granting = false;
        self.lease = Some(Lease { id, valid_until: sent_at + self.ttl });
        self.campaign_if_free()
    }

    /// A grant failed: try again (the shell spaces attempts with a backoff).
    pub fn grant_failed(&mut self) -> Vec<Action> {
        self.granting = true;
        vec![Action::Grant]
    }

    /// A refresh of `id` sent at `sent_at` answered with `ttl_left` seconds (0: expired).
    pub fn refreshed(&mut self, id: i64, ttl_left: i64, sent_at: Instant) -> Vec<Action> {
        let Some(lease) = self.lease.as_mut().filter(|l| l.id == id) else { return Vec::new() };
        if ttl_left > 0 {
            lease.valid_until = lease.valid_until.max(sent_at + self.ttl);
            return Vec::new();
        }
        self.lose_lease("the lease expired")
    }

    fn lose_lease(&mut self, why: &'static str) -> Vec<Action> {
        self.lease = None;
        let mut actions = Vec::new();
        if self.term.take().is_some() {
            actions.push(Action::StepDown(why));
        }
        if !self.granting {
            self.granting = true;
            actions.push(Action::Grant);
        }
        actions
    }

    /// Time passed: a lease not refreshed in time is treated as lost (and leadership with it).
    pub fn tick(&mut self, now: Instant) -> Vec<Action> {
        match self.lease {
            Some(l) if now >= l.valid_until => self.lose_lease("the lease could not be refreshed in time"),
            Some(_) => self.campaign_if_free(),
            None if !self.granting => {
                self.granting = true;
                vec![Action::Grant]
            }
            None => Vec::new(),
        }
    }

    /// A campaign with `lease` won `term`.
    pub fn won(&mut self, lease: i64, term: i64, name: &str) -> Vec<Action> {
        if self.lease.map(|l| l.id) != Some(lease) {
            // The lease was lost while the campaign ran: the key dies with it.
            return Vec::new();
        }
        self.leader = Some((name.to_owned(), term));
        if self.term == Some(term) {
            return Vec::new();
        }
        self.term = Some(term);
        vec![Action::Lead(term)]
    }

    /// The leader key as the store shows it now (from a campaign that lost, or the watch).
    pub fn leader_seen(&mut self, leader: Option<(String, i64)>) -> Vec<Action> {
        self.leader = leader.clone();
        match (self.term, leader) {
            // Someone else's key (or none) while this replica believed it led: it was deposed.
            (Some(term), Some((_, t))) if t != term => {
                self.term = None;
                vec![Action::StepDown("another replica holds the leadership")]
            }
            (Some(_), None) => {
                self.term = None;
                let mut a = vec![Action::StepDown("the leader key is gone")];
                a.extend(self.campaign_if_free());
                a
            }
            (None, None) => self.campaign_if_free(),
            _ => Vec::new(),
        }
    }

    /// The store refused a leader write (fence): another replica leads, or nobody does.
    pub fn fenced(&mut self) -> Vec<Action> {
        if self.term.take().is_some() {
            let mut a = vec![Action::StepDown("the store refused a write (fenced)")];
            a.extend(self.campaign_if_free());
            return a;
        }
        Vec::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TTL: Duration = Duration::from_secs(5);

    #[test]
    fn a_replica_leads_once_it_has_a_lease_and_the_key_is_free() {
        let t0 = Instant::now();
        let (mut e, first) = Election::new(TTL);
        assert_eq!(first, [Action::Grant]);
        assert_eq!(e.role(), Role::Degraded);
        assert_eq!(e.granted(7, t0), [Action::Campaign(7)]);
        assert_eq!(e.role(), Role::Follower);
        assert_eq!(e.won(7, 100, "a"), [Action::Lead(100)]);
        assert_eq!((e.role(), e.term()), (Role::Leader, Some(100)));
        assert!(e.won(7, 100, "a").is_empty(), "a repeated answer changes nothing");
    }

    #[test]
    fn a_follower_campaigns_when_the_leader_key_goes() {
        let t0 = Instant::now();
        let (mut e, _) = Election::new(TTL);
        e.granted(7, t0);
        assert!(e.leader_seen(Some(("b".into(), 50))).is_empty());
        assert!(e.tick(t0 + Duration::from_secs(1)).is_empty(), "b leads: nothing to do");
        assert_eq!(e.leader_seen(None), [Action::Campaign(7)]);
    }

    #[test]
    fn a_leader_whose_lease_may_have_expired_steps_down_before_anyone_else_can_lead() {
        let t0 = Instant::now();
        let (mut e, _) = Election::new(TTL);
        e.granted(7, t0);
        e.won(7, 100, "a");
        // Refreshes that never answer (paused, cut off): leading ends when the lease may end.
        assert!(e.tick(t0 + TTL - Duration::from_millis(1)).is_empty());
        let a = e.tick(t0 + TTL);
        assert_eq!(a, [Action::StepDown("the lease could not be refreshed in time"), Action::Grant]);
        assert_eq!(e.role(), Role::Degraded);
        assert!(e.tick(t0 + TTL * 2).is_empty(), "one grant at a time");
        assert_eq!(e.grant_failed(), [Action::Grant]);
    }

    #[test]
    fn a_refresh_extends_from_when_it_was_sent() {
        let t0 = Instant::now();
        let (mut e, _) = Election::new(TTL);
        e.granted(7, t0);
        e.won(7, 100, "a");
        assert!(e.refreshed(7, 5, t0 + Duration::from_secs(2)).is_empty());
        assert!(e.tick(t0 + Duration::from_secs(6)).is_empty(), "valid until 2 s + 5 s");
        assert!(!e.tick(t0 + Duration::from_secs(7)).is_empty());
    }

    #[test]
    fn an_expired_lease_or_a_fence_ends_leadership() {
        let t0 = Instant::now();
        let (mut e, _) = Election::new(TTL);
        e.granted(7, t0);
        e.won(7, 100, "a");
        assert_eq!(e.refreshed(7, 0, t0), [Action::StepDown("the lease expired"), Action::Grant]);
        e.granted(8, t0);
        e.won(8, 200, "a");
        assert_eq!(
            e.fenced(),
            [Action::StepDown("the store refused a write (fenced)")],
            "b's key is known: no campaign"
        );
        assert!(e.fenced().is_empty());
        // Another term in the leader key while leading: deposed.
        e.leader_seen(None);
        e.won(8, 300, "a");
        assert_eq!(e.leader_seen(Some(("b".into(), 301))), [Action::StepDown("another replica holds the leadership")]);
        assert_eq!(e.role(), Role::Follower);
    }

    #[test]
    fn a_win_with_a_lost_lease_is_ignored() {
        let t0 = Instant::now();
        let (mut e, _) = Election::new(TTL);
        e.granted(7, t0);
        e.refreshed(7, 0, t0);
        assert!(e.won(7, 100, "a").is_empty());
        assert_eq!(e.role(), Role::Degraded);
    }
}
