//! Values only the replicated store has: who leads, which replicas run, which gateway sessions
//! each holds. JSON, like every stored value.

use serde::{Deserialize, Serialize};
use skybridge_api::catalog::UnixMillis;
use skybridge_api::model::ClusterId;

/// `P/leader`: the elected replica, on its lease.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeaderRecord {
    pub name: String,
    pub since: UnixMillis,
}

/// A replica's role.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Runs the sources and the merge; writes catalog versions.
    Leader,
    /// Serves what the leader wrote.
    Follower,
    /// Cannot reach etcd: serves its last catalog, read-only.
    Degraded,
}

impl Role {
    /// The name the API shows.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Leader => "leader",
            Role::Follower => "follower",
            Role::Degraded => "degraded",
        }
    }
}

/// `P/replicas/<name>`: one running replica, on its lease.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReplicaRecord {
    pub name: String,
    pub role: Role,
    pub role_since: UnixMillis,
    /// The catalog version this replica serves to its gateways.
    pub catalog_version: u64,
    pub version_since: UnixMillis,
    pub started_at: UnixMillis,
    /// Gateway sessions it holds.
    pub gateways: usize,
    /// The federator's software version.
    pub software: String,
    /// Its own certificate (absent in records of older versions).
    #[serde(default)]
    pub certificate: CertificateStatus,
}

/// A replica's own certificate, as its record carries it to the other replicas.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CertificateStatus {
    /// Unix ms of its `notAfter`; 0 when unknown.
    pub not_after: UnixMillis,
    /// Within the replica's `tls.expiry_warning` of expiry, or expired.
    pub expiring: bool,
}

/// One path measurement, as a gateway last reported it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PeerSample {
    pub to: ClusterId,
    pub rtt_ms: Option<f64>,
    pub rank_rtt_ms: Option<f64>,
    pub state: String,
    /// Records written before the TCP transport existed have none: QUIC.
    #[serde(default = "quic")]
    pub transport: String,
    #[serde(default)]
    pub transport_for_s: Option<u64>,
}

fn quic() -> String {
    "quic".to_owned()
}

/// How long a gateway's newer ACK may wait before other replicas are told of it.
pub const ACK_REFRESH_MS: u64 = 5_000;

/// `P/presence/<cluster>/<instance>/<replica>`: a gateway session, on the holding replica's
/// lease, so it disappears with the replica. Carries what other replicas' APIs show of it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PresenceRecord {
    pub since: UnixMillis,
    pub cloud: String,
    pub region: String,
    pub acked_version: u64,
    pub nacks: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_nack: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_report: Option<UnixMillis>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub peers: Vec<PeerSample>,
}

impl PresenceRecord {
    /// Whether `self`, already stored at `written_at`, must be rewritten as `next` at `now`.
    /// Latency moves a little with every report, and every gateway ACKs every catalog version;
    /// rewriting for each would cost a write per gateway per report and per version. What
    /// changes what the API or route choice shows (a new session, a NACK, a path's state, a
    /// real RTT move) is written at once; ACKs wait for [`ACK_REFRESH_MS`], small RTT
    /// movements for `refresh_ms`.
    pub fn needs_write(&self, next: &PresenceRecord, written_at: UnixMillis, now: UnixMillis, refresh_ms: u64) -> bool {
        let same_shape = self.since == next.since
            && self.cloud == next.cloud
            && self.region == next.region
            && self.nacks == next.nacks
            && self.last_nack == next.last_nack
            && self.peers.len() == next.peers.len()
            && self
                .peers
                .iter()
                .zip(&next.peers)
                .all(|(a, b)| a.to == b.to && a.state == b.state && a.transport == b.transport);
        if !same_shape {
            return true;
        }
        if self == next {
            return false;
        }
        let moved = |a: Option<f64>, b: Option<f64>| match (a, b) {
            (Some(a), Some(b)) => (a - b).abs() > 1.0_f64.max(a.abs() * 0.1),
            (None, None) => false,
            _ => true,
        };
        let rtt_moved = self
            .peers
            .iter()
            .zip(&next.peers)
            .any(|(a, b)| moved(a.rank_rtt_ms.or(a.rtt_ms), b.rank_rtt_ms.or(b.rtt_ms)));
        let age = now.saturating_sub(written_at);
        rtt_moved || age >= refresh_ms || (self.acked_version != next.acked_version && age >= ACK_REFRESH_MS)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(rtt: f64, state: &str) -> PresenceRecord {
        PresenceRecord {
            since: 1,
            cloud: "aws".into(),
            region: "r".into(),
            acked_version: 3,
            nacks: 0,
            last_nack: None,
            last_report: Some(10),
            peers: vec![PeerSample {
                to: ClusterId::new("gcp-1").unwrap(),
                rtt_ms: Some(rtt),
                rank_rtt_ms: None,
                state: state.into(),
                transport: "quic".into(),
                transport_for_s: None,
            }],
        }
    }

    #[test]
    fn small_rtt_moves_wait_for_the_refresh_but_state_and_acks_do_not() {
        let old = rec(20.0, "healthy");
        assert!(!old.needs_write(&old, 0, 100, 30_000), "identical");
        let mut jitter = rec(20.5, "healthy");
        jitter.last_report = Some(20);
        assert!(!old.needs_write(&jitter, 0, 1_000, 30_000), "0.5 ms of jitter waits");
        assert!(old.needs_write(&jitter, 0, 30_000, 30_000), "...until the refresh");
        assert!(old.needs_write(&rec(40.0, "healthy"), 0, 1_000, 30_000), "a real move is written at once");
        assert!(old.needs_write(&rec(20.0, "down"), 0, 1_000, 30_000), "a state change is written at once");
        let mut acked = rec(20.0, "healthy");
        acked.acked_version = 4;
        assert!(!old.needs_write(&acked, 0, 1_000, 30_000), "ACKs of every version are batched");
        assert!(old.needs_write(&acked, 0, ACK_REFRESH_MS, 30_000), "...for a few seconds");
    }
}
