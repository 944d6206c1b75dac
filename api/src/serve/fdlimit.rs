//! The open-file limit. Every connection is a descriptor, so the connection caps mean nothing
//! if the process runs out first. Container runtimes (containerd 2, systemd units) start
//! processes with a soft limit of 1024 and a far higher hard limit; Go programs raise the soft
//! limit at start-up, Rust programs must do it themselves. Kubernetes has no pod setting for it.

/// The process's open-file limit; `None` is unlimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FdLimit {
    /// The soft limit found at start-up.
    pub before: Option<u64>,
    /// The soft limit now in force.
    pub soft: Option<u64>,
    /// The hard limit (the most the soft one may be raised to).
    pub hard: Option<u64>,
}

/// Raises the soft open-file limit to the hard limit and returns both. A failure to raise
/// leaves the limit as it was (reported in `soft`).
pub fn raise() -> FdLimit {
    use rustix::process::{Resource, getrlimit, setrlimit};
    let old = getrlimit(Resource::Nofile);
    let mut new = old;
    new.current = old.maximum;
    let raised = new.current != old.current && setrlimit(Resource::Nofile, new).is_ok();
    let now = if raised { getrlimit(Resource::Nofile) } else { old };
    FdLimit { before: old.current, soft: now.current, hard: now.maximum }
}

/// Raises the soft limit (see [`raise`]) and logs what it found: the raise at `info`, and at
/// `warn` when the limit still cannot hold `needed` descriptors (the connection caps named by
/// `what`). Call once at start-up.
pub fn ensure(needed: u64, what: &str) -> FdLimit {
    let limit = raise();
    let show = |v: Option<u64>| v.map_or("unlimited".to_owned(), |v| v.to_string());
    if limit.soft != limit.before {
        tracing::info!(from = %show(limit.before), to = %show(limit.soft), "raised the open-file limit to the hard limit");
    }
    if let Some(why) = shortfall(limit, needed, what) {
        tracing::warn!("{why}");
    }
    limit
}

/// Descriptors a process keeps besides its connections (listeners, files, the runtime, logs,
/// outbound clients).
pub const FD_RESERVE: u64 = 256;

/// Why `limit` cannot hold `needed` descriptors, if it cannot (pure). `what` names the settings
/// that make up `needed`, for the operator.
pub fn shortfall(limit: FdLimit, needed: u64, what: &str) -> Option<String> {
    let soft = limit.soft?;
    let needed = needed.saturating_add(FD_RESERVE);
    (soft < needed).then(|| {
        format!(
            "the open-file limit is {soft} (hard limit {}), but {what} need up to {needed} descriptors: \
             connections past the limit fail to accept; raise the container runtime's nofile limit \
             or lower those settings",
            limit.hard.map_or("unlimited".to_owned(), |h| h.to_string()),
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_limit_that_holds_the_caps_and_reserve_is_enough() {
        let l = |soft| FdLimit { before: Some(1024), soft, hard: Some(524_288) };
        assert_eq!(shortfall(l(None), u64::MAX, "x"), None);
        assert_eq!(shortfall(l(Some(524_288)), 10_000, "x"), None);
        assert_eq!(shortfall(l(Some(10_256)), 10_000, "x"), None);
        let short = shortfall(l(Some(1024)), 10_000, "limits.max_connections (10000)").unwrap();
        assert!(short.contains("open-file limit is 1024 (hard limit 524288)"), "{short}");
        assert!(short.contains("limits.max_connections (10000) need up to 10256"), "{short}");
    }

    #[test]
    fn raising_reaches_the_hard_limit() {
        let l = raise();
        assert_eq!(l.soft, l.hard, "{l:?}");
        assert_eq!(raise(), FdLimit { before: l.soft, ..l });
    }
}
