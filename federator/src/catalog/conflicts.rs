//! Conflict events: which (service, cluster) export conflicts a new catalog version opened or
//! cleared against the previous one. Pure.

use std::collections::BTreeSet;

use skybridge_api::catalog::GlobalCatalog;

/// `(kind, message)` for each conflict that appeared (`conflict`) or cleared
/// (`conflict_cleared`) between `before` and `after`.
pub fn conflict_events(before: &GlobalCatalog, after: &GlobalCatalog) -> Vec<(&'static str, String)> {
    let set = |c: &GlobalCatalog| -> BTreeSet<(String, String, String, String)> {
        c.services
            .iter()
            .flat_map(|(k, s)| {
                s.conflicts
                    .iter()
                    .map(move |x| (k.to_string(), x.cluster.to_string(), x.winner.to_string(), x.reason.clone()))
            })
            .collect()
    };
    let (was, now) = (set(before), set(after));
    let key = |(s, c, _, _): &(String, String, String, String)| (s.clone(), c.clone());
    let was_keys: BTreeSet<_> = was.iter().map(key).collect();
    let now_keys: BTreeSet<_> = now.iter().map(key).collect();
    let mut out = Vec::new();
    for (service, cluster, winner, reason) in now.iter().filter(|x| !was_keys.contains(&key(x))) {
        out.push((
            "conflict",
            format!("{service}: {cluster}'s export conflicts with {winner}'s, which wins: {reason}"),
        ));
    }
    for (service, cluster, _, _) in was.iter().filter(|x| !now_keys.contains(&key(x))) {
        out.push(("conflict_cleared", format!("{service}: {cluster}'s export no longer conflicts")));
    }
    out
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use skybridge_api::catalog::{Conflict, GlobalService};
    use skybridge_api::model::ClusterId;

    use super::*;

    fn catalog(conflicts: &[(&str, &str)]) -> GlobalCatalog {
        let mut c = GlobalCatalog::default();
        for (svc, cluster) in conflicts {
            let s = c.services.entry(svc.parse().unwrap()).or_insert_with(|| GlobalService {
                ports: vec![],
                clusters: BTreeMap::new(),
                conflicts: vec![],
            });
            s.conflicts.push(Conflict {
                cluster: ClusterId::new(cluster).unwrap(),
                winner: ClusterId::new("aws-1").unwrap(),
                reason: "port 80 is tcp there, http here".into(),
            });
        }
        c
    }

    #[test]
    fn conflicts_that_open_and_clear_are_events_and_standing_ones_are_not() {
        let a = catalog(&[("prod/web", "gcp-1")]);
        let b = catalog(&[("prod/web", "gcp-1"), ("prod/api", "azure-1")]);
        let e = conflict_events(&a, &b);
        assert_eq!(e.len(), 1);
        assert_eq!(e[0].0, "conflict");
        assert!(e[0].1.starts_with("prod/api: azure-1's export conflicts with aws-1's"), "{}", e[0].1);
        let e = conflict_events(&b, &catalog(&[("prod/api", "azure-1")]));
        assert_eq!(e, vec![("conflict_cleared", "prod/web: gcp-1's export no longer conflicts".to_owned())]);
        assert!(conflict_events(&b, &b).is_empty());
    }
}
