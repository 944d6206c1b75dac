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
    /// Give up a lease this replica no longer uses, so that what hangs on it (a leader key
    /// above all) goes now rather than when etcd notices.
    Revoke(i64),
}

/// Who holds the leader key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Holder {
    pub name: String,
    /// The key's create revision: the holder's term.
    pub term: i64,
    /// The lease the key hangs on.
    pub lease: i64,
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
    name: String,
    ttl: Duration,
    lease: Option<Lease>,
    /// The term this replica leads in.
    term: Option<i64>,
    /// The leader key as last seen, and the store revision it was seen at (answers that
    /// arrive late never override newer ones).
    leader: Option<Holder>,
    leader_at: i64,
    /// A grant request is in flight or due.
    granting: bool,
    /// A campaign is in flight; `again`: what it answers may already be stale, ask again.
    campaigning: bool,
    again: bool,
}

impl Election {
    /// Replica `name` with no lease yet: its first action is [`Action::Grant`].
    pub fn new(name: &str, ttl: Duration) -> (Election, Vec<Action>) {
        let e = Election {
            name: name.to_owned(),
            ttl,
            lease: None,
            term: None,
            leader: None,
            leader_at: 0,
            granting: true,
            campaigning: false,
            again: false,
        };
        (e, vec![Action::Grant])
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

    /// A campaign, when the key is free, nobody's is in flight and this replica has a lease.
    fn campaign_if_free(&mut self) -> Vec<Action> {
        match (self.lease, &self.leader, self.term) {
            (Some(l), None, None) => {
                if self.campaigning {
                    self.again = true;
                    return Vec::new();
                }
                self.campaigning = true;
                vec![Action::Campaign(l.id)]
            }
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
        let mut actions = Vec::new();
        if let Some(old) = self.lease.take() {
            actions.push(Action::Revoke(old.id));
        }
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

    /// A campaign with `lease` won `term` (the revision it created the key at).
    pub fn won(&mut self, lease: i64, term: i64) -> Vec<Action> {
        let holder = Holder { name: self.name.clone(), term, lease };
        let mut actions = self.campaign_answered();
        actions.extend(self.leader_seen(Some(holder), term));
        actions
    }

    /// A campaign found the key held by `holder` (None: deleted meanwhile) at store revision
    /// `at`.
    pub fn held(&mut self, holder: Option<Holder>, at: i64) -> Vec<Action> {
        let mut actions = self.campaign_answered();
        actions.extend(self.leader_seen(holder, at));
        actions
    }

    /// A campaign failed (its outcome is unknown: the watch will tell).
    pub fn campaign_failed(&mut self) -> Vec<Action> {
        self.campaign_answered()
    }

    fn campaign_answered(&mut self) -> Vec<Action> {
        self.campaigning = false;
        if std::mem::take(&mut self.again) { self.campaign_if_free() } else { Vec::new() }
    }

    /// The leader key as the store showed it at revision `at` (from the watch or a campaign).
    pub fn leader_seen(&mut self, leader: Option<Holder>, at: i64) -> Vec<Action> {
        if at < self.leader_at {
            return Vec::new(); // older than what is known
        }
        self.leader_at = at;
        self.leader = leader.clone();
        match (self.term, leader) {
            (Some(term), Some(h)) if h.term == term => Vec::new(),
            // Another key (or none) while this replica believed it led: it was deposed.
            (Some(_), other) => {
                self.term = None;
                let why =
                    if other.is_some() { "another replica holds the leadership" } else { "the leader key is gone" };
                let mut a = vec![Action::StepDown(why)];
                a.extend(self.campaign_if_free());
                a
            }
            // This replica's own key on its current lease (a campaign that won although its
            // answer was lost, or a lead it gave up without releasing the key): take it up.
            (None, Some(h)) if h.name == self.name && Some(h.lease) == self.lease() => {
                self.term = Some(h.term);
                vec![Action::Lead(h.term)]
            }
            (None, None) => self.campaign_if_free(),
            (None, Some(_)) => Vec::new(),
        }
    }

    /// The leader's work ended without being asked to, or the store refused one of its writes
    /// (fence): this replica stops leading. A key it still holds is released by the shell
    /// (resign); the watch then shows the key gone and the campaign starts over.
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

    fn holder(name: &str, term: i64, lease: i64) -> Option<Holder> {
        Some(Holder { name: name.into(), term, lease })
    }

    #[test]
    fn a_replica_leads_once_it_has_a_lease_and_the_key_is_free() {
        let t0 = Instant::now();
        let (mut e, first) = Election::new("a", TTL);
        assert_eq!(first, [Action::Grant]);
        assert_eq!(e.role(), Role::Degraded);
        assert_eq!(e.granted(7, t0), [Action::Campaign(7)]);
        assert_eq!(e.role(), Role::Follower);
        assert_eq!(e.won(7, 100), [Action::Lead(100)]);
        assert_eq!((e.role(), e.term()), (Role::Leader, Some(100)));
        assert!(e.leader_seen(holder("a", 100, 7), 100).is_empty(), "the watch confirms it");
    }

    #[test]
    fn a_follower_campaigns_when_the_leader_key_goes() {
        let t0 = Instant::now();
        let (mut e, _) = Election::new("a", TTL);
        e.granted(7, t0);
        assert!(e.held(holder("b", 50, 9), 60).is_empty());
        assert!(e.tick(t0 + Duration::from_secs(1)).is_empty(), "b leads: nothing to do");
        assert_eq!(e.leader_seen(None, 70), [Action::Campaign(7)]);
    }

    #[test]
    fn a_late_campaign_answer_does_not_override_what_the_watch_saw() {
        let t0 = Instant::now();
        let (mut e, _) = Election::new("a", TTL);
        assert_eq!(e.granted(7, t0), [Action::Campaign(7)]);
        // While the campaign is out, the watch shows b's key go: a campaign is wanted again.
        assert!(e.leader_seen(holder("b", 50, 9), 50).is_empty());
        assert!(e.leader_seen(None, 80).is_empty(), "one campaign at a time");
        // The campaign's answer was read before b's key went: stale, and a new one is asked for.
        assert_eq!(e.held(holder("b", 50, 9), 75), [Action::Campaign(7)]);
        assert_eq!(e.role(), Role::Follower);
        // A win the watch already contradicts (our key gone at a later revision) is dropped.
        assert!(e.leader_seen(None, 120).is_empty());
        assert_eq!(e.won(7, 100), [Action::Campaign(7)], "the key is gone again: try again");
        assert_eq!(e.term(), None);
    }

    #[test]
    fn its_own_key_is_taken_up_again() {
        let t0 = Instant::now();
        let (mut e, _) = Election::new("a", TTL);
        e.granted(7, t0);
        // The campaign's answer was lost, but the key was created.
        assert!(e.campaign_failed().is_empty());
        assert_eq!(e.leader_seen(holder("a", 100, 7), 100), [Action::Lead(100)]);
        // A key of this replica on an old lease is not: it dies with that lease.
        let (mut e, _) = Election::new("a", TTL);
        e.granted(8, t0);
        assert!(e.leader_seen(holder("a", 100, 7), 100).is_empty());
        assert_eq!(e.term(), None);
    }

    #[test]
    fn a_leader_whose_lease_may_have_expired_steps_down_before_anyone_else_can_lead() {
        let t0 = Instant::now();
        let (mut e, _) = Election::new("a", TTL);
        e.granted(7, t0);
        e.won(7, 100);
        // Refreshes that never answer (paused, cut off): leading ends when the lease may end.
        assert!(e.tick(t0 + TTL - Duration::from_millis(1)).is_empty());
        let a = e.tick(t0 + TTL);
        assert_eq!(a, [Action::Revoke(7), Action::StepDown("the lease could not be refreshed in time"), Action::Grant]);
        assert_eq!(e.role(), Role::Degraded);
        assert!(e.tick(t0 + TTL * 2).is_empty(), "one grant at a time");
        assert_eq!(e.grant_failed(), [Action::Grant]);
    }

    #[test]
    fn a_refresh_extends_from_when_it_was_sent() {
        let t0 = Instant::now();
        let (mut e, _) = Election::new("a", TTL);
        e.granted(7, t0);
        e.won(7, 100);
        assert!(e.refreshed(7, 5, t0 + Duration::from_secs(2)).is_empty());
        assert!(e.tick(t0 + Duration::from_secs(6)).is_empty(), "valid until 2 s + 5 s");
        assert!(!e.tick(t0 + Duration::from_secs(7)).is_empty());
    }

    #[test]
    fn an_expired_lease_or_a_fence_ends_leadership() {
        let t0 = Instant::now();
        let (mut e, _) = Election::new("a", TTL);
        e.granted(7, t0);
        e.won(7, 100);
        assert_eq!(e.refreshed(7, 0, t0), [Action::Revoke(7), Action::StepDown("the lease expired"), Action::Grant]);
        e.granted(8, t0);
        e.leader_seen(None, 150);
        e.won(8, 200);
        assert_eq!(e.fenced(), [Action::StepDown("the store refused a write (fenced)")], "its key is still seen");
        assert!(e.fenced().is_empty());
        // Another term in the leader key while leading: deposed.
        e.leader_seen(None, 250);
        e.won(8, 300);
        assert_eq!(e.term(), Some(300));
        assert_eq!(e.leader_seen(holder("b", 301, 9), 301), [Action::StepDown("another replica holds the leadership")]);
        assert_eq!(e.role(), Role::Follower);
    }

    #[test]
    fn a_win_with_a_lost_lease_is_ignored() {
        let t0 = Instant::now();
        let (mut e, _) = Election::new("a", TTL);
        e.granted(7, t0);
        e.refreshed(7, 0, t0);
        assert!(e.won(7, 100).is_empty());
        assert_eq!(e.role(), Role::Degraded);
    }
}
