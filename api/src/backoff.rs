//! Retry pacing shared by every reconnecting or re-polling loop (catalog sources, the gateway's
//! federator client). Pure: the jitter's randomness comes in as an argument.

use std::time::Duration;

use crate::config::{ConfigError, duration, invalid};

/// The retry pacing every catalog source defaults to: 1 s after the first failure, doubling to
/// a minute.
pub const SOURCE_DEFAULT: Backoff = Backoff { min: Duration::from_secs(1), max: Duration::from_secs(60) };

/// The longest wait any configured backoff may reach: past it a failure looks like an outage.
pub const MAX: Duration = Duration::from_secs(3600);

/// Retry pacing after failures: exponential from `min` to `max`, with ±20% jitter so that many
/// federator replicas or sources do not retry in lockstep.
#[derive(Debug, Clone, Copy)]
pub struct Backoff {
    pub min: Duration,
    pub max: Duration,
}

impl Backoff {
    /// A configured pair, checked the one way every config does it: `min` positive, `max` at
    /// least `min` and at most [`MAX`]. `min_key` and `max_key` are the keys errors name.
    pub fn checked(min_key: &str, min: Duration, max_key: &str, max: Duration) -> Result<Backoff, ConfigError> {
        if min.is_zero() {
            return Err(invalid(min_key, duration::format(min), "must be positive"));
        }
        if max < min {
            return Err(invalid(max_key, duration::format(max), format!("must be at least {min_key}")));
        }
        if max > MAX {
            return Err(invalid(max_key, duration::format(max), format!("must be at most {}", duration::format(MAX))));
        }
        Ok(Backoff { min, max })
    }

    /// [`Backoff::checked`] for the usual `<prefix>.backoff_min` / `<prefix>.backoff_max` keys.
    pub fn checked_keys(prefix: &str, min: Duration, max: Duration) -> Result<Backoff, ConfigError> {
        Backoff::checked(&format!("{prefix}.backoff_min"), min, &format!("{prefix}.backoff_max"), max)
    }

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
    fn configured_pairs_are_checked_naming_the_key() {
        let s = Duration::from_secs;
        assert_eq!(Backoff::checked_keys("sources[1]", s(1), s(60)).unwrap().max, s(60));
        let e = Backoff::checked_keys("sources[1]", Duration::ZERO, s(60)).unwrap_err().to_string();
        assert!(e.contains("`sources[1].backoff_min`") && e.contains("positive"), "{e}");
        let e = Backoff::checked_keys("sources[1]", s(5), s(1)).unwrap_err().to_string();
        assert!(e.contains("`sources[1].backoff_max`") && e.contains("at least sources[1].backoff_min"), "{e}");
        let e = Backoff::checked("federator.reconnect_min", s(1), "federator.reconnect_max", s(7200)).unwrap_err();
        assert!(e.to_string().contains("`federator.reconnect_max`"), "{e}");
    }

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
