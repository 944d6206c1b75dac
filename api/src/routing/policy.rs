//! A service's routing policy, set through the federator's API and pushed to every gateway.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::authz::SourceMatcher;
use crate::model::ClusterId;

/// A routing policy for one service (weights, failover order, avoid, allow and deny lists).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct Policy {
    /// Traffic weights per cluster (0-100 each); empty means no weighted split.
    #[serde(default)]
    pub weights: BTreeMap<ClusterId, u32>,
    /// Explicit failover order; clusters not listed come after, by latency.
    #[serde(default)]
    pub failover: Vec<ClusterId>,
    /// Clusters never to send this service's traffic to.
    #[serde(default)]
    pub avoid: Vec<ClusterId>,
    /// Sources allowed to reach the service (clusters, globs, trust domains); `None`: the
    /// receiving gateway's default decides.
    #[serde(default)]
    pub allow: Option<Vec<SourceMatcher>>,
    /// Sources refused whatever else says (deny wins).
    #[serde(default)]
    pub deny: Vec<SourceMatcher>,
}

impl Policy {
    /// Whether the policy changes route choice at all (an allow list alone does not).
    pub fn steers(&self) -> bool {
        self.weights.values().any(|w| *w > 0) || !self.failover.is_empty() || !self.avoid.is_empty()
    }
}
