//! The mass-removal guard, pure. One bad answer must never erase every route: an emptied
//! catalog file, an IAM change that hides every Cloud Map namespace, an API that returns an empty
//! page. A sync that would remove more than a share of a source's services (or all of them) is
//! held: the previous data stays served, and the removal applies only once the same answer has
//! stood for the hold time, or an operator confirms it.

use std::sync::Arc;

use serde::{Deserialize, Serialize};
use skybridge_api::catalog::{SourceSnapshot, UnixMillis};

/// Guard settings.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct GuardConfig {
    /// A sync removing more than this share of a source's services is held (1.0: only one that
    /// removes all of them).
    pub max_share: f64,
    /// How long a held answer must stand before it applies by itself.
    pub hold_ms: u64,
}

/// A held answer, as the API shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HeldRemoval {
    /// When this answer was first seen.
    pub since: UnixMillis,
    /// Services it would remove, of how many.
    pub removed: usize,
    pub of: usize,
    /// When it applies unless another answer comes first.
    pub applies_at: UnixMillis,
}

/// What to do with a successful sync.
#[derive(Debug, Clone, PartialEq)]
pub enum Verdict {
    /// Use it.
    Apply,
    /// Keep the previous data; `first` when this answer was not held before.
    Hold { held: HeldRemoval, first: bool },
}

/// One source's guard state: the answer being held, if any.
#[derive(Debug, Clone, Default)]
pub struct Guard {
    held: Option<(Arc<SourceSnapshot>, HeldRemoval)>,
}

impl Guard {
    /// Judges `next` against `previous` (the data served now; None before the first sync) at
    /// `now`.
    pub fn judge(
        &mut self,
        previous: Option<&SourceSnapshot>,
        next: &Arc<SourceSnapshot>,
        now: UnixMillis,
        cfg: &GuardConfig,
    ) -> Verdict {
        let Some(prev) = previous.filter(|p| !p.services.is_empty()) else {
            self.held = None;
            return Verdict::Apply;
        };
        let removed = prev.services.keys().filter(|k| !next.services.contains_key(*k)).count();
        let of = prev.services.len();
        let suspicious = removed == of || removed as f64 > of as f64 * cfg.max_share;
        if !suspicious {
            self.held = None;
            return Verdict::Apply;
        }
        match &self.held {
            // The same answer again: it applies once it has stood for the hold time.
            Some((held, h)) if **held == **next => {
                if now >= h.applies_at {
                    self.held = None;
                    Verdict::Apply
                } else {
                    Verdict::Hold { held: h.clone(), first: false }
                }
            }
            _ => {
                let h = HeldRemoval { since: now, removed, of, applies_at: now.saturating_add(cfg.hold_ms) };
                self.held = Some((next.clone(), h.clone()));
                Verdict::Hold { held: h, first: true }
            }
        }
    }

    /// What is held, if anything.
    pub fn held(&self) -> Option<&HeldRemoval> {
        self.held.as_ref().map(|(_, h)| h)
    }

    /// The held answer, once due at `now` (or at once when `confirmed`); it is no longer held.
    pub fn release(&mut self, now: UnixMillis, confirmed: bool) -> Option<Arc<SourceSnapshot>> {
        match &self.held {
            Some((_, h)) if confirmed || now >= h.applies_at => self.held.take().map(|(s, _)| s),
            _ => None,
        }
    }

    /// The source failed or was removed: whatever was held no longer stands.
    pub fn clear(&mut self) {
        self.held = None;
    }
}

#[cfg(test)]
mod tests {
    use skybridge_api::catalog::Export;
    use skybridge_api::model::{ClusterId, ServiceKey};

    use super::*;

    const CFG: GuardConfig = GuardConfig { max_share: 0.5, hold_ms: 300_000 };

    fn snap(n: usize) -> Arc<SourceSnapshot> {
        let mut s = SourceSnapshot::default();
        for i in 0..n {
            let e = Export { cluster: ClusterId::new("a-1").unwrap(), exported_at: 1, ports: vec![] };
            s.services.insert(ServiceKey::new("prod", &format!("s{i}")).unwrap(), vec![e]);
        }
        Arc::new(s)
    }

    #[test]
    fn an_empty_answer_is_held_then_applies_after_the_hold_time() {
        let mut g = Guard::default();
        let (ten, empty) = (snap(10), snap(0));
        let Verdict::Hold { held, first: true } = g.judge(Some(&ten), &empty, 1_000, &CFG) else { panic!() };
        assert_eq!((held.removed, held.of, held.applies_at), (10, 10, 301_000));
        assert!(matches!(g.judge(Some(&ten), &empty, 200_000, &CFG), Verdict::Hold { first: false, .. }));
        assert!(g.release(300_999, false).is_none());
        assert_eq!(g.judge(Some(&ten), &empty, 301_000, &CFG), Verdict::Apply, "the same answer stood long enough");
        assert!(g.held().is_none());
    }

    #[test]
    fn small_removals_apply_and_a_normal_answer_cancels_a_hold() {
        let mut g = Guard::default();
        assert_eq!(g.judge(Some(&snap(10)), &snap(5), 0, &CFG), Verdict::Apply, "half is not more than half");
        assert!(matches!(g.judge(Some(&snap(10)), &snap(4), 0, &CFG), Verdict::Hold { .. }));
        assert_eq!(g.judge(Some(&snap(10)), &snap(9), 10, &CFG), Verdict::Apply);
        assert!(g.held().is_none());
        assert_eq!(g.judge(None, &snap(0), 0, &CFG), Verdict::Apply, "a first sync has nothing to lose");
        assert_eq!(g.judge(Some(&snap(0)), &snap(0), 0, &CFG), Verdict::Apply);
    }

    #[test]
    fn another_suspicious_answer_restarts_the_hold_and_a_confirmation_releases_at_once() {
        let mut g = Guard::default();
        g.judge(Some(&snap(10)), &snap(0), 0, &CFG);
        let Verdict::Hold { held, first: true } = g.judge(Some(&snap(10)), &snap(1), 100_000, &CFG) else { panic!() };
        assert_eq!(held.since, 100_000, "a different answer is a new hold");
        assert!(g.release(100_001, false).is_none());
        assert_eq!(g.release(100_001, true).map(|s| s.services.len()), Some(1));
        assert!(g.release(100_001, true).is_none(), "nothing left to release");
        let strict = GuardConfig { max_share: 1.0, ..CFG };
        assert_eq!(g.judge(Some(&snap(10)), &snap(1), 0, &strict), Verdict::Apply, "1.0 holds only total removals");
    }
}
