//! Who may reach a service: per-service `allow` and `deny` lists of source clusters, cluster
//! globs and trust domains, over a default of allow or deny. Deny wins. Pure: the receiving
//! gateway asks it with the verified identity of the gateway that opened the stream.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::model::ClusterId;
use crate::trust::ClusterGlob;

/// One entry of an `allow` or `deny` list.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub enum SourceMatcher {
    /// One cluster: `aws-prod-use1`.
    Cluster(ClusterId),
    /// Clusters matching a glob: `gcp-*`.
    Glob(ClusterGlob),
    /// Every gateway of a trust domain: `spiffe://gcp.corp.example`.
    TrustDomain(String),
}

impl SourceMatcher {
    /// Whether a gateway of `cluster` in `trust_domain` is named by this entry.
    pub fn matches(&self, cluster: &ClusterId, trust_domain: &str) -> bool {
        match self {
            SourceMatcher::Cluster(c) => c == cluster,
            SourceMatcher::Glob(g) => g.matches(cluster.as_str()),
            SourceMatcher::TrustDomain(td) => td == trust_domain,
        }
    }

    /// The cluster an exact entry names (what an API can check exists).
    pub fn cluster(&self) -> Option<&ClusterId> {
        match self {
            SourceMatcher::Cluster(c) => Some(c),
            _ => None,
        }
    }
}

impl FromStr for SourceMatcher {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        if let Some(td) = s.strip_prefix("spiffe://") {
            let td = td.trim_end_matches('/');
            return if crate::identity::valid_trust_domain(td) && !td.contains('/') {
                Ok(SourceMatcher::TrustDomain(td.to_owned()))
            } else {
                Err(format!("{s:?} is not a trust domain (spiffe://<domain>)"))
            };
        }
        if s.contains('*') {
            return ClusterGlob::parse(s).map(SourceMatcher::Glob).map_err(|e| format!("cluster glob {s:?}: {e}"));
        }
        ClusterId::new(s).map(SourceMatcher::Cluster).map_err(|_| {
            format!("{s:?} is not a cluster id, a cluster glob (gcp-*) or a trust domain (spiffe://<domain>)")
        })
    }
}

impl TryFrom<String> for SourceMatcher {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        s.parse()
    }
}

impl From<SourceMatcher> for String {
    fn from(m: SourceMatcher) -> String {
        m.to_string()
    }
}

impl fmt::Display for SourceMatcher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SourceMatcher::Cluster(c) => write!(f, "{c}"),
            SourceMatcher::Glob(g) => write!(f, "{}", g.as_str()),
            SourceMatcher::TrustDomain(td) => write!(f, "spiffe://{td}"),
        }
    }
}

/// What happens to a source no list names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DefaultAction {
    #[default]
    Allow,
    Deny,
}

impl DefaultAction {
    /// The stricter of two defaults: deny when either denies.
    pub fn and(self, other: DefaultAction) -> DefaultAction {
        if self == DefaultAction::Deny || other == DefaultAction::Deny {
            DefaultAction::Deny
        } else {
            DefaultAction::Allow
        }
    }

    /// `allow` or `deny`.
    pub fn as_str(self) -> &'static str {
        match self {
            DefaultAction::Allow => "allow",
            DefaultAction::Deny => "deny",
        }
    }
}

/// The outcome and the rule that decided it, for refusals, logs and metrics.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verdict {
    pub allowed: bool,
    /// `deny[0] = "gcp-*"`, `allow[1] = "spiffe://gcp.corp.example"`, `allow list (no entry
    /// matches)`, `default allow`, `default deny`.
    pub rule: String,
}

/// Decides whether a gateway of `cluster` in `trust_domain` may reach a service with these
/// lists: a matching `deny` entry refuses; then an `allow` list, when present, admits only
/// what it names; with neither, `default` decides.
pub fn decide(
    allow: Option<&[SourceMatcher]>,
    deny: &[SourceMatcher],
    default: DefaultAction,
    cluster: &ClusterId,
    trust_domain: &str,
) -> Verdict {
    if let Some((i, m)) = deny.iter().enumerate().find(|(_, m)| m.matches(cluster, trust_domain)) {
        return Verdict { allowed: false, rule: format!("deny[{i}] = {:?}", m.to_string()) };
    }
    match allow {
        Some(list) => match list.iter().enumerate().find(|(_, m)| m.matches(cluster, trust_domain)) {
            Some((i, m)) => Verdict { allowed: true, rule: format!("allow[{i}] = {:?}", m.to_string()) },
            None => Verdict { allowed: false, rule: "allow list (no entry matches)".into() },
        },
        None => Verdict { allowed: default == DefaultAction::Allow, rule: format!("default {}", default.as_str()) },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(s: &str) -> SourceMatcher {
        s.parse().unwrap()
    }

    fn id(s: &str) -> ClusterId {
        ClusterId::new(s).unwrap()
    }

    #[test]
    fn entries_parse_and_print_back() {
        for s in ["aws-1", "gcp-*", "spiffe://gcp.corp.example"] {
            assert_eq!(m(s).to_string(), s);
        }
        assert!(matches!(m("spiffe://gcp.corp.example/"), SourceMatcher::TrustDomain(td) if td == "gcp.corp.example"));
        for bad in ["", "a.b", "GCP-*", "spiffe://", "spiffe://a/b", "spiffe://UPPER"] {
            assert!(bad.parse::<SourceMatcher>().is_err(), "{bad:?}");
        }
        let json: Vec<SourceMatcher> = serde_json::from_str(r#"["aws-1", "gcp-*"]"#).unwrap();
        assert_eq!(serde_json::to_string(&json).unwrap(), r#"["aws-1","gcp-*"]"#);
    }

    #[test]
    fn deny_wins_then_the_allow_list_then_the_default() {
        let (aws, gcp) = (id("aws-1"), id("gcp-1"));
        let v = |allow: Option<&[SourceMatcher]>, deny: &[SourceMatcher], d, c: &ClusterId, td: &str| {
            let v = decide(allow, deny, d, c, td);
            (v.allowed, v.rule)
        };
        let allow = [m("aws-*"), m("spiffe://gcp.corp")];
        let deny = [m("aws-1")];
        assert_eq!(
            v(Some(&allow), &deny, DefaultAction::Allow, &aws, "aws.corp"),
            (false, r#"deny[0] = "aws-1""#.into())
        );
        assert_eq!(v(Some(&allow), &[], DefaultAction::Deny, &aws, "aws.corp"), (true, r#"allow[0] = "aws-*""#.into()));
        assert_eq!(
            v(Some(&allow), &[], DefaultAction::Deny, &gcp, "gcp.corp"),
            (true, r#"allow[1] = "spiffe://gcp.corp""#.into())
        );
        assert_eq!(
            v(Some(&allow), &[], DefaultAction::Allow, &gcp, "other.corp"),
            (false, "allow list (no entry matches)".into())
        );
        assert_eq!(v(None, &[], DefaultAction::Deny, &aws, "aws.corp"), (false, "default deny".into()));
        assert_eq!(v(None, &[], DefaultAction::Allow, &aws, "aws.corp"), (true, "default allow".into()));
        assert!(!v(None, &[m("spiffe://aws.corp")], DefaultAction::Allow, &aws, "aws.corp").0);
        // An empty allow list admits nobody, whatever the default.
        assert!(!decide(Some(&[]), &[], DefaultAction::Allow, &aws, "aws.corp").allowed);
        assert_eq!(DefaultAction::Allow.and(DefaultAction::Deny), DefaultAction::Deny);
        assert_eq!(DefaultAction::Allow.and(DefaultAction::Allow), DefaultAction::Allow);
    }
}
