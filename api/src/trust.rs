//! Which trust domain may claim which cluster: the scope check of federated trust. Pure: the
//! verifier asks it after a chain verified against the roots of the domain the certificate
//! names.
//!
//! - Our own trust domain's roots may sign any cluster, except one that a federated domain's
//!   explicit `clusters` globs claim: such a cluster belongs to that domain alone.
//! - A federated domain's roots may sign only the clusters its globs match (any cluster when it
//!   has none, apart from those another domain claims).
//! - A certificate of any other trust domain is refused whatever signed it.

use crate::identity::SpiffeId;

/// A cluster-id pattern: DNS-label characters and `*` (any run of characters, even none).
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize)]
#[serde(try_from = "String")]
pub struct ClusterGlob(String);

impl TryFrom<String> for ClusterGlob {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        ClusterGlob::parse(&s).map_err(|reason| format!("cluster glob {s:?}: {reason}"))
    }
}

impl ClusterGlob {
    /// Parses a glob; the error says what is wrong.
    pub fn parse(s: &str) -> Result<Self, String> {
        if s.is_empty() || s.len() > 63 {
            return Err("must be 1 to 63 characters".into());
        }
        if !s.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'*') {
            return Err("only lowercase letters, digits, '-' and '*' are allowed".into());
        }
        Ok(ClusterGlob(s.to_owned()))
    }

    /// The pattern as written.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Whether `cluster` matches the pattern.
    pub fn matches(&self, cluster: &str) -> bool {
        intersect(self.0.as_bytes(), cluster.as_bytes())
    }

    /// Whether some cluster id matches both patterns.
    pub fn overlaps(&self, other: &ClusterGlob) -> bool {
        intersect(self.0.as_bytes(), other.0.as_bytes())
    }
}

/// Whether two patterns (with `*`; a plain string is a pattern without one) share a match.
/// `dp[i][j]`: the suffixes `a[i..]` and `b[j..]` share one. Quadratic, without recursion.
fn intersect(a: &[u8], b: &[u8]) -> bool {
    let (n, m) = (a.len(), b.len());
    let mut dp = vec![vec![false; m + 1]; n + 1];
    dp[n][m] = true;
    for i in (0..=n).rev() {
        for j in (0..=m).rev() {
            if i == n && j == m {
                continue;
            }
            dp[i][j] = if i < n && a[i] == b'*' {
                // The star matches nothing, or takes one more character of b.
                dp[i + 1][j] || (j < m && dp[i][j + 1])
            } else if j < m && b[j] == b'*' {
                dp[i][j + 1] || (i < n && dp[i + 1][j])
            } else {
                i < n && j < m && a[i] == b[j] && dp[i + 1][j + 1]
            };
        }
    }
    dp[0][0]
}

/// One federated trust domain's scope.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DomainScope {
    pub trust_domain: String,
    /// `None`: any cluster another domain does not claim.
    pub clusters: Option<Vec<ClusterGlob>>,
    /// Set for a domain the federator distributed: its claims count only for clusters these
    /// globs (the gateway's `[federator] distributed_trust`) match, so the federator cannot
    /// hand a domain of its choosing any other cluster.
    pub ceiling: Option<Vec<ClusterGlob>>,
}

impl DomainScope {
    /// Whether the domain explicitly claims `cluster` (its globs and its ceiling match).
    fn claims(&self, cluster: &str) -> bool {
        let within = |g: &Option<Vec<ClusterGlob>>| g.as_ref().is_some_and(|g| g.iter().any(|g| g.matches(cluster)));
        within(&self.clusters) && (self.ceiling.is_none() || within(&self.ceiling))
    }
}

/// Why a verified certificate may still not speak for the cluster it names.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ScopeError {
    #[error("{id} is of trust domain {found}, which is neither ours ({own}) nor federated (tls.federated)")]
    UnknownDomain { id: SpiffeId, found: String, own: String },
    #[error("{id}: trust domain {domain} may only claim clusters {globs:?} (tls.federated)")]
    OutOfScope { id: SpiffeId, domain: String, globs: Vec<String> },
    #[error("{id}: cluster {cluster} belongs to trust domain {owner} (its tls.federated clusters), not {}", id.trust_domain)]
    ClaimedByOther { id: SpiffeId, cluster: String, owner: String },
    #[error("{id} was issued under an intermediate CA of trust domain {intermediate}")]
    ForeignIntermediate { id: SpiffeId, intermediate: String },
    #[error(
        "{id}: trust domain {domain} shares its roots with another domain, so its certificates must come through an intermediate CA naming spiffe://{domain} (skybridge ca issue --intermediate)"
    )]
    Undelegated { id: SpiffeId, domain: String },
}

/// Whether a chain's intermediates bind it to the leaf's trust domain: none may name another
/// domain (its `spiffe://<td>` URI SAN), and when the domain's roots also serve another domain
/// (`shared`: one root delegating a CA per domain) one must name the leaf's.
pub fn check_delegation(id: &SpiffeId, intermediates: &[Option<String>], shared: bool) -> Result<(), ScopeError> {
    if let Some(other) = intermediates.iter().flatten().find(|td| **td != id.trust_domain) {
        return Err(ScopeError::ForeignIntermediate { id: id.clone(), intermediate: other.clone() });
    }
    if shared && !intermediates.iter().flatten().any(|td| *td == id.trust_domain) {
        return Err(ScopeError::Undelegated { id: id.clone(), domain: id.trust_domain.clone() });
    }
    Ok(())
}

/// Our trust domain and the federated ones, with their scopes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrustScopes {
    pub own: String,
    pub federated: Vec<DomainScope>,
}

impl TrustScopes {
    /// Only our own trust domain.
    pub fn own(trust_domain: &str) -> Self {
        TrustScopes { own: trust_domain.to_owned(), federated: Vec::new() }
    }

    /// Whether `trust_domain` is ours or federated.
    pub fn knows(&self, trust_domain: &str) -> bool {
        trust_domain == self.own || self.federated.iter().any(|d| d.trust_domain == trust_domain)
    }

    /// Whether `id` (from a chain verified against its own domain's roots) may speak for the
    /// cluster it names. Identities without a cluster (the federator) only need a known domain.
    pub fn check(&self, id: &SpiffeId) -> Result<(), ScopeError> {
        let td = &id.trust_domain;
        if !self.knows(td) {
            return Err(ScopeError::UnknownDomain { id: id.clone(), found: td.clone(), own: self.own.clone() });
        }
        let Some(cluster) = id.cluster().map(|c| c.as_str()) else { return Ok(()) };
        // An explicit claim by another domain wins over our own roots and over a domain without
        // globs.
        let owner = self.federated.iter().find(|d| &d.trust_domain != td && d.claims(cluster));
        if let Some(owner) = owner {
            return Err(ScopeError::ClaimedByOther {
                id: id.clone(),
                cluster: cluster.to_owned(),
                owner: owner.trust_domain.clone(),
            });
        }
        match self.federated.iter().find(|d| &d.trust_domain == td) {
            Some(d @ DomainScope { clusters: Some(globs), .. }) if !d.claims(cluster) => {
                let ceiling = d.ceiling.iter().flatten().map(|g| format!("{} (distributed_trust)", g.as_str()));
                Err(ScopeError::OutOfScope {
                    id: id.clone(),
                    domain: td.clone(),
                    globs: globs.iter().map(|g| g.as_str().to_owned()).chain(ceiling).collect(),
                })
            }
            _ => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::ClusterId;

    fn glob(s: &str) -> ClusterGlob {
        ClusterGlob::parse(s).unwrap()
    }

    fn gw(td: &str, cluster: &str) -> SpiffeId {
        SpiffeId::gateway(td, ClusterId::new(cluster).unwrap())
    }

    fn scopes() -> TrustScopes {
        TrustScopes {
            own: "aws.corp".into(),
            federated: vec![
                DomainScope { trust_domain: "gcp.corp".into(), clusters: Some(vec![glob("gcp-*")]), ceiling: None },
                DomainScope { trust_domain: "partner.example".into(), clusters: None, ceiling: None },
            ],
        }
    }

    #[test]
    fn a_distributed_domain_claims_only_within_the_gateways_ceiling() {
        // The federator handed out partner.example for partner-* and aws-1; the gateway lets
        // it introduce domains for partner-* only.
        let s = TrustScopes {
            own: "aws.corp".into(),
            federated: vec![DomainScope {
                trust_domain: "partner.example".into(),
                clusters: Some(vec![glob("partner-*"), glob("aws-1")]),
                ceiling: Some(vec![glob("partner-*")]),
            }],
        };
        assert_eq!(s.check(&gw("partner.example", "partner-3")), Ok(()));
        let e = s.check(&gw("partner.example", "aws-1")).unwrap_err();
        assert!(
            matches!(&e, ScopeError::OutOfScope { globs, .. } if globs.iter().any(|g| g.contains("distributed_trust"))),
            "{e}"
        );
        // ... and so aws-1 stays our own domain's: the claim outside the ceiling takes nothing away.
        assert_eq!(s.check(&gw("aws.corp", "aws-1")), Ok(()));
        assert!(matches!(s.check(&gw("aws.corp", "partner-3")), Err(ScopeError::ClaimedByOther { .. })));
    }

    #[test]
    fn globs_match_and_overlap() {
        assert!(glob("gcp-*").matches("gcp-prod-1") && glob("gcp-*").matches("gcp-"));
        assert!(!glob("gcp-*").matches("aws-gcp-1"));
        assert!(glob("*-prod").matches("gcp-prod") && !glob("*-prod").matches("gcp-prod-1"));
        assert!(glob("a*b*c").matches("abc") && glob("a*b*c").matches("axxbyyc") && !glob("a*b*c").matches("acb"));
        assert!(glob("exact").matches("exact") && !glob("exact").matches("exactly"));
        assert!(glob("gcp-*").overlaps(&glob("*-prod")), "gcp-prod matches both");
        assert!(glob("gcp-*").overlaps(&glob("gcp-eu-*")));
        assert!(!glob("gcp-*").overlaps(&glob("aws-*")));
        assert!(!glob("a*").overlaps(&glob("b*")) && glob("*").overlaps(&glob("x")));
        assert!(!glob("ab").overlaps(&glob("a")) && glob("a*").overlaps(&glob("*b")));
    }

    #[test]
    fn intermediates_bind_a_chain_to_their_domain() {
        let id = gw("gcp.corp", "gcp-1");
        let some = |s: &str| Some(s.to_owned());
        assert_eq!(check_delegation(&id, &[], false), Ok(()));
        assert_eq!(check_delegation(&id, &[None], false), Ok(()));
        assert_eq!(check_delegation(&id, &[some("gcp.corp")], true), Ok(()));
        assert!(matches!(
            check_delegation(&id, &[some("aws.corp")], false),
            Err(ScopeError::ForeignIntermediate { .. })
        ));
        assert!(matches!(
            check_delegation(&id, &[some("gcp.corp"), some("aws.corp")], true),
            Err(ScopeError::ForeignIntermediate { .. })
        ));
        assert!(matches!(check_delegation(&id, &[], true), Err(ScopeError::Undelegated { .. })));
        assert!(matches!(check_delegation(&id, &[None], true), Err(ScopeError::Undelegated { .. })));
    }

    #[test]
    fn glob_syntax_is_checked() {
        for bad in ["", "GCP-*", "gcp_1", "gcp.*", &"a".repeat(64)] {
            assert!(ClusterGlob::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn a_federated_domain_claims_only_its_clusters() {
        let s = scopes();
        assert_eq!(s.check(&gw("gcp.corp", "gcp-1")), Ok(()));
        assert!(matches!(s.check(&gw("gcp.corp", "aws-1")), Err(ScopeError::OutOfScope { .. })));
        // Our own roots may not speak for a cluster a federated domain claims.
        assert!(matches!(s.check(&gw("aws.corp", "gcp-1")), Err(ScopeError::ClaimedByOther { .. })));
        assert_eq!(s.check(&gw("aws.corp", "aws-1")), Ok(()));
        // Without globs: anything not claimed elsewhere.
        assert_eq!(s.check(&gw("partner.example", "p-1")), Ok(()));
        assert!(matches!(s.check(&gw("partner.example", "gcp-9")), Err(ScopeError::ClaimedByOther { .. })));
        assert!(matches!(s.check(&gw("evil.example", "aws-1")), Err(ScopeError::UnknownDomain { .. })));
        assert_eq!(s.check(&SpiffeId::federator("aws.corp")), Ok(()));
        assert!(TrustScopes::own("aws.corp").check(&gw("gcp.corp", "gcp-1")).is_err());
    }
}
