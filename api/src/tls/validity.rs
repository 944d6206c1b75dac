//! Our own certificate's dates: refused when expired or not yet valid, and a warning window
//! ahead of expiry. Pure: time comes in.

use std::time::{Duration, SystemTime};

/// How long before expiry a certificate is reported as expiring, unless configured.
pub const DEFAULT_EXPIRY_WARNING: Duration = Duration::from_secs(7 * 24 * 3600);

/// A certificate's validity window.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Validity {
    pub not_before: SystemTime,
    pub not_after: SystemTime,
}

/// Why a certificate cannot be used now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DateProblem {
    NotYetValid,
    Expired,
}

fn unix(secs: i64) -> SystemTime {
    // Dates before 1970 are as good as "long ago" for every check made here.
    SystemTime::UNIX_EPOCH + Duration::from_secs(u64::try_from(secs).unwrap_or(0))
}

impl Validity {
    /// Reads the dates of a DER certificate.
    pub fn of_der(der: &[u8]) -> Result<Validity, String> {
        use x509_parser::prelude::{FromDer, X509Certificate};
        let (_, cert) = X509Certificate::from_der(der).map_err(|e| e.to_string())?;
        let v = cert.validity();
        Ok(Validity { not_before: unix(v.not_before.timestamp()), not_after: unix(v.not_after.timestamp()) })
    }

    /// Whether the certificate is usable at `now` (both ends inclusive, as RFC 5280 says).
    pub fn check(&self, now: SystemTime) -> Result<(), DateProblem> {
        if now < self.not_before {
            Err(DateProblem::NotYetValid)
        } else if now > self.not_after {
            Err(DateProblem::Expired)
        } else {
            Ok(())
        }
    }
}

/// How close a certificate is to its expiry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Expiry {
    /// Time left (zero once expired).
    pub remaining: Duration,
    /// Inside the warning window (or expired).
    pub expiring: bool,
}

/// The expiry status at `now` for a certificate valid until `not_after`, warning `window` ahead.
pub fn expiry(not_after: SystemTime, now: SystemTime, window: Duration) -> Expiry {
    let remaining = not_after.duration_since(now).unwrap_or(Duration::ZERO);
    Expiry { remaining, expiring: remaining <= window }
}

/// `2026-12-05T22:21:08Z` (UTC, seconds), for messages that name dates.
pub fn rfc3339(t: SystemTime) -> String {
    let secs = match t.duration_since(SystemTime::UNIX_EPOCH) {
        Ok(d) => d.as_secs(),
        Err(_) => return "before 1970-01-01T00:00:00Z".into(),
    };
    let (days, rem) = (secs / 86_400, secs % 86_400);
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm), in u64/i64 only.
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!("{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z", rem / 3600, rem % 3600 / 60, rem % 60)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(secs: u64) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(secs)
    }

    #[test]
    fn dates_are_checked_inclusively() {
        let v = Validity { not_before: at(100), not_after: at(200) };
        assert_eq!(v.check(at(99)), Err(DateProblem::NotYetValid));
        assert_eq!(v.check(at(100)), Ok(()));
        assert_eq!(v.check(at(200)), Ok(()));
        assert_eq!(v.check(at(201)), Err(DateProblem::Expired));
    }

    #[test]
    fn expiry_window() {
        let week = DEFAULT_EXPIRY_WARNING;
        let e = expiry(at(1_000_000), at(0), week);
        assert_eq!(e, Expiry { remaining: Duration::from_secs(1_000_000), expiring: false });
        assert!(expiry(at(1_000_000), at(1_000_000 - 3600), week).expiring);
        assert_eq!(expiry(at(10), at(20), week), Expiry { remaining: Duration::ZERO, expiring: true });
        // A zero window warns only once expired.
        assert!(!expiry(at(10), at(9), Duration::ZERO).expiring);
    }

    #[test]
    fn formats_utc_dates() {
        assert_eq!(rfc3339(at(0)), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(at(951_782_400)), "2000-02-29T00:00:00Z");
        assert_eq!(rfc3339(at(1_796_509_268)), "2026-12-05T22:21:08Z");
        assert_eq!(rfc3339(at(4_102_444_799)), "2099-12-31T23:59:59Z");
    }
}
