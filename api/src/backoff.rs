//! Retry pacing shared by every reconnecting or re-polling loop (catalog sources, the gateway's
//! federator client). Pure: the jitter's randomness comes in as an argument.

use std::time::Duration;

/// Retry pacing after failures: exponential from `min` to `max`, with ±20% jitter so that many
/// federator replicas or sources do not retry in lockstep.
#[derive(Debug, Clone, Copy)]
pub struct Backoff {
    pub min: Duration,
    pub max: Duration,
}

impl Backoff {
    /// The wait after `failures` consecutive failures (1 = first), before jitter.
    pub fn base(&self, failures: u32) -> Duration {
        let factor = 1u32 << failures.saturating_sub(1).min(16);
        self.min.saturating_mul(factor).min(self.max)
    }

    /// [`Backoff::base`] with jitter drawn from `unit` in [0, 1).
    pub fn jittered(&self, failures: u32, unit: f64) -> Duration {
        self.base(failures).mul_f64(0.8 + 0.4 * unit.clamp(0.0, 1.0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_caps_and_jitters() {
        let b = Backoff { min: Duration::from_millis(500), max: Duration::from_secs(30) };
        assert_eq!(b.base(1), Duration::from_millis(500));
        assert_eq!(b.base(2), Duration::from_secs(1));
        assert_eq!(b.base(4), Duration::from_secs(4));
        assert_eq!(b.base(10), Duration::from_secs(30));
        assert_eq!(b.base(100), Duration::from_secs(30));
        assert_eq!(b.jittered(1, 0.0), Duration::from_millis(400));
        assert_eq!(b.jittered(1, 0.5), Duration::from_millis(500));
        assert!(b.jittered(1, 0.999_999) < Duration::from_millis(600));
    }
}
