//! Trust domains the federator distributes over the control stream (its `[federator]
//! distribute_trust`), so that adding a federated domain does not mean editing every gateway.
//! A gateway takes them only when it opts in with `[federator] distributed_trust = [globs]`,
//! and a distributed domain's certificates count only for clusters those globs match: the
//! federator, trusted to route, is not thereby trusted to hand any cluster to a CA of its
//! choosing. Locally configured domains always win. Pure: the control-stream client feeds it.

use rustls_pki_types::CertificateDer;

use crate::identity::valid_trust_domain;
use crate::proto::wire;
use crate::trust::{ClusterGlob, TrustScopes};

/// A trust domain as the federator distributes it: its roots and the clusters it may claim.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DistributedDomain {
    pub trust_domain: String,
    pub roots: Vec<CertificateDer<'static>>,
    pub clusters: Vec<ClusterGlob>,
}

impl From<&DistributedDomain> for wire::TrustDomain {
    fn from(d: &DistributedDomain) -> Self {
        wire::TrustDomain {
            trust_domain: d.trust_domain.clone(),
            roots: d.roots.iter().map(|c| c.to_vec()).collect(),
            clusters: d.clusters.iter().map(|g| g.as_str().to_owned()).collect(),
        }
    }
}

/// Decodes what the federator sent; an entry with a bad cluster glob is returned as refused
/// (trust domain, reason) rather than failing the catalog update it came with.
pub fn from_wire(w: &[wire::TrustDomain]) -> (Vec<DistributedDomain>, Vec<(String, String)>) {
    let (mut ok, mut bad) = (Vec::new(), Vec::new());
    for t in w {
        match t.clusters.iter().map(|g| ClusterGlob::parse(g).map_err(|e| format!("clusters {g:?}: {e}"))).collect() {
            Ok(clusters) => ok.push(DistributedDomain {
                trust_domain: t.trust_domain.clone(),
                roots: t.roots.iter().map(|r| CertificateDer::from(r.clone())).collect(),
                clusters,
            }),
            Err(e) => bad.push((t.trust_domain.clone(), e)),
        }
    }
    (ok, bad)
}

/// The offered domains a gateway trusts, and why it refused the others.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Accepted {
    pub domains: Vec<DistributedDomain>,
    /// (trust domain, reason).
    pub refused: Vec<(String, String)>,
}

/// Decides which `offered` domains to trust, given our own and the locally configured ones
/// (`local`) and the clusters the federator may introduce domains for (`ceiling`; empty: none).
pub(super) fn accept(local: &TrustScopes, ceiling: &[ClusterGlob], offered: Vec<DistributedDomain>) -> Accepted {
    let mut out = Accepted::default();
    for d in offered {
        let reason = if ceiling.is_empty() {
            Some("this gateway does not take distributed trust ([federator] distributed_trust is empty)".to_owned())
        } else if !valid_trust_domain(&d.trust_domain) {
            Some("not a valid trust domain name".to_owned())
        } else if local.knows(&d.trust_domain) {
            Some("configured locally (ours or [[tls.federated]]), which wins".to_owned())
        } else if d.clusters.is_empty() {
            Some("a distributed domain must name its clusters".to_owned())
        } else if d.roots.is_empty() {
            Some("no root certificates".to_owned())
        } else {
            let taken = local
                .federated
                .iter()
                .map(|s| (s.trust_domain.as_str(), s.clusters.as_deref().unwrap_or_default()))
                .chain(out.domains.iter().map(|a| (a.trust_domain.as_str(), a.clusters.as_slice())));
            overlap(&d.clusters, taken)
        };
        match reason {
            Some(r) => out.refused.push((d.trust_domain, r)),
            None => out.domains.push(d),
        }
    }
    out
}

/// Why `globs` may not be taken: one overlaps a glob another domain already claims.
fn overlap<'a>(globs: &[ClusterGlob], taken: impl Iterator<Item = (&'a str, &'a [ClusterGlob])>) -> Option<String> {
    for (domain, theirs) in taken {
        for g in globs {
            if let Some(t) = theirs.iter().find(|t| t.overlaps(g)) {
                return Some(format!(
                    "its clusters {:?} overlap {:?} of {domain}: a cluster id belongs to one trust domain",
                    g.as_str(),
                    t.as_str()
                ));
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::trust::DomainScope;

    fn glob(s: &str) -> ClusterGlob {
        ClusterGlob::parse(s).unwrap()
    }

    fn offer(td: &str, clusters: &[&str]) -> DistributedDomain {
        DistributedDomain {
            trust_domain: td.into(),
            roots: vec![CertificateDer::from(vec![1u8, 2, 3])],
            clusters: clusters.iter().map(|c| glob(c)).collect(),
        }
    }

    #[test]
    fn only_new_scoped_non_overlapping_domains_are_taken_and_only_when_opted_in() {
        let local = TrustScopes {
            own: "aws.corp".into(),
            federated: vec![DomainScope {
                trust_domain: "gcp.corp".into(),
                clusters: Some(vec![glob("gcp-*")]),
                ceiling: None,
            }],
        };
        let offered = vec![
            offer("azure.corp", &["azure-*"]),
            offer("gcp.corp", &["gcp-*"]),
            offer("aws.corp", &["aws-*"]),
            offer("rogue.corp", &["gcp-eu-*"]),
            offer("late.corp", &["azure-eu-*"]),
            offer("loose.corp", &[]),
            offer("Bad Name", &["x-*"]),
        ];
        assert_eq!(accept(&local, &[], offered.clone()).domains, vec![], "not opted in: nothing");
        let a = accept(&local, &[glob("*")], offered);
        assert_eq!(a.domains.iter().map(|d| d.trust_domain.as_str()).collect::<Vec<_>>(), ["azure.corp"]);
        let why = |td: &str| a.refused.iter().find(|(d, _)| d == td).map(|(_, r)| r.clone()).unwrap();
        assert!(why("gcp.corp").contains("locally"));
        assert!(why("aws.corp").contains("locally"));
        assert!(why("rogue.corp").contains("gcp.corp"), "{}", why("rogue.corp"));
        assert!(why("late.corp").contains("azure.corp"), "an earlier distributed domain's claim counts too");
        assert!(why("loose.corp").contains("name its clusters"));
        assert!(why("Bad Name").contains("valid"));
        // Through the wire and back; a bad glob is refused, not fatal.
        let d = offer("azure.corp", &["azure-*"]);
        let mut bad = wire::TrustDomain::from(&d);
        bad.clusters.push("Bad_Glob".into());
        let (ok, refused) = from_wire(&[wire::TrustDomain::from(&d), bad]);
        assert_eq!(ok, vec![d]);
        assert!(refused[0].1.contains("Bad_Glob"), "{refused:?}");

        let mut empty = offer("empty.corp", &["e-*"]);
        empty.roots.clear();
        assert!(accept(&local, &[glob("*")], vec![empty]).refused[0].1.contains("no root"));
    }
}
