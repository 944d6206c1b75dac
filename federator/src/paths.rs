//! Path events: what a gateway's report says changed about one path (cluster to cluster), as
//! events for the log, the API and the dashboard. Pure: the control session hands in the
//! report and the one it replaces. Several instances of a cluster report the same path; only
//! a change of the path's recorded state makes an event, so steady reports make none.

use skybridge_api::model::ClusterId;
use skybridge_api::routing::{State, Tier};

/// One event about a path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PathEvent {
    /// `path_down`, `path_suspect`, `path_recovered` or `path_transport`.
    pub kind: &'static str,
    pub message: String,
}

/// How route choice treats a reported state; an unknown name counts as unknown (good).
fn tier(state: &str) -> Tier {
    State::parse(state).map_or(Tier::Good, State::tier)
}

/// The events from a path's report (`state`, `transport`) replacing `before` (the last recorded
/// `(state, transport)`, `None` when the federator has none: it started, or the path is new).
pub fn transition(
    from: &ClusterId,
    to: &ClusterId,
    before: Option<(&str, &str)>,
    state: &str,
    transport: &str,
) -> Vec<PathEvent> {
    let mut out = Vec::new();
    let path = format!("{from} → {to}");
    let was = before.map(|(s, _)| tier(s));
    let event = match (was, tier(state)) {
        (Some(a), b) if a == b => None,
        (_, Tier::Out) => Some(("path_down", format!("path {path} is down ({state}): new connections go elsewhere"))),
        (Some(Tier::Good) | None, Tier::Suspect) => {
            Some(("path_suspect", format!("path {path} is suspect: probes are being missed")))
        }
        (Some(Tier::Suspect | Tier::Out), Tier::Good) => Some(("path_recovered", format!("path {path} recovered"))),
        _ => None,
    };
    if let Some((kind, message)) = event {
        out.push(PathEvent { kind, message });
    }
    if let Some((_, t)) = before
        && t != transport
    {
        let message = match transport {
            "tcp" => format!("path {path} moved to TLS over TCP: UDP looks blocked on it"),
            _ => format!("path {path} is back on {}", transport.to_uppercase()),
        };
        out.push(PathEvent { kind: "path_transport", message });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kinds(before: Option<(&str, &str)>, state: &str, transport: &str) -> Vec<&'static str> {
        let (a, b) = (ClusterId::new("aws-1").unwrap(), ClusterId::new("gcp-1").unwrap());
        transition(&a, &b, before, state, transport).into_iter().map(|e| e.kind).collect()
    }

    #[test]
    fn tier_changes_make_events_and_steady_reports_none() {
        let q = "quic";
        assert_eq!(kinds(Some(("healthy", q)), "down", q), ["path_down"]);
        assert_eq!(kinds(Some(("healthy", q)), "suspect", q), ["path_suspect"]);
        assert_eq!(kinds(Some(("suspect", q)), "down", q), ["path_down"]);
        assert_eq!(kinds(Some(("down", q)), "probing", q), Vec::<&str>::new(), "still out");
        assert_eq!(kinds(Some(("probing", q)), "healthy", q), ["path_recovered"]);
        assert_eq!(kinds(Some(("suspect", q)), "healthy", q), ["path_recovered"]);
        assert_eq!(kinds(Some(("down", q)), "suspect", q), Vec::<&str>::new(), "better, not recovered");
        assert_eq!(kinds(Some(("healthy", q)), "healthy", q), Vec::<&str>::new());
        assert_eq!(kinds(Some(("unknown", q)), "healthy", q), Vec::<&str>::new());
        // The federator's first report of a path: only bad news is news.
        assert_eq!(kinds(None, "healthy", q), Vec::<&str>::new());
        assert_eq!(kinds(None, "down", q), ["path_down"]);
        // Transport changes, alone or with a state change.
        assert_eq!(kinds(Some(("healthy", q)), "healthy", "tcp"), ["path_transport"]);
        assert_eq!(kinds(Some(("down", "tcp")), "healthy", q), ["path_recovered", "path_transport"]);
        let (a, b) = (ClusterId::new("aws-1").unwrap(), ClusterId::new("gcp-1").unwrap());
        let e = transition(&a, &b, Some(("healthy", "quic")), "down", "quic");
        assert_eq!(e[0].message, "path aws-1 → gcp-1 is down (down): new connections go elsewhere");
    }
}
