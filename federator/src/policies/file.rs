//! The policies file (`[policies] path`): TOML, one table per service, each a policy as the
//! API takes it (docs/federator.md, "Policies from a file"):
//!
//! ```toml
//! [policy."prod/payments"]
//! weights = { aws-prod-use1 = 90, gcp-prod-euw1 = 10 }
//! allow = ["aws-prod-*", "spiffe://gcp.corp.example"]
//! ```
//!
//! Read whole and validated whole: one bad entry rejects the file (the previous one stays in
//! effect), so a half-edited file never half applies. An empty file is rejected too, as a
//! truncated write would be; a file with only comments means "no policies".

use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use serde::Deserialize;
use skybridge_api::model::ServiceKey;

use crate::api::policy::{PolicyDto, validate};
use crate::store::Policy;

/// Largest policies file read (thousands of policies are well under a megabyte).
pub const MAX_FILE_BYTES: u64 = 16 << 20;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FileDoc {
    #[serde(default)]
    policy: BTreeMap<String, PolicyDto>,
}

/// Parses and validates the whole file; the error names the service and field at fault.
pub fn parse(text: &str) -> Result<BTreeMap<ServiceKey, Policy>, String> {
    if text.trim().is_empty() {
        return Err("the file is empty (a truncated write?); a file meaning \"no policies\" holds a comment".into());
    }
    let doc: FileDoc = toml::from_str(text).map_err(|e| e.to_string().trim_end().to_owned())?;
    doc.policy
        .into_iter()
        .map(|(name, dto)| {
            let key: ServiceKey =
                name.parse().map_err(|e| format!("policy.{name:?}: not a service namespace/name: {e}"))?;
            let policy = validate(dto).map_err(|e| format!("policy.{name:?}.{}", e.body.error))?;
            Ok((key, policy))
        })
        .collect()
}

/// Reads and parses `path` (at most [`MAX_FILE_BYTES`]).
pub fn load(path: &Path) -> Result<BTreeMap<ServiceKey, Policy>, String> {
    let f = std::fs::File::open(path).map_err(|e| e.to_string())?;
    let mut text = String::new();
    f.take(MAX_FILE_BYTES + 1).read_to_string(&mut text).map_err(|e| e.to_string())?;
    if text.len() as u64 > MAX_FILE_BYTES {
        return Err(format!("larger than {MAX_FILE_BYTES} bytes"));
    }
    parse(&text)
}

/// The file and what was last read of it: polled, it answers only when the file changed.
#[derive(Debug)]
pub struct PolicyFile {
    path: PathBuf,
    stamp: Option<(Option<SystemTime>, u64)>,
}

impl PolicyFile {
    /// `path`, read already (at start) with the result the caller applied.
    pub fn new(path: PathBuf) -> Self {
        let stamp = stamp(&path);
        PolicyFile { path, stamp }
    }

    /// The file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// `None` when the file has not changed since the last poll; else its new policies or why
    /// they were refused (a missing file included: a Kubernetes ConfigMap swap can make it
    /// vanish for a moment, and that must not wipe the policies).
    pub fn poll(&mut self) -> Option<Result<BTreeMap<ServiceKey, Policy>, String>> {
        let now = stamp(&self.path);
        if now == self.stamp {
            return None;
        }
        self.stamp = now;
        Some(load(&self.path))
    }
}

/// Modification time and length: enough to notice a rewrite or a ConfigMap's symlink swap.
fn stamp(path: &Path) -> Option<(Option<SystemTime>, u64)> {
    std::fs::metadata(path).ok().map(|m| (m.modified().ok(), m.len()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_file_of_policies_parses_and_validates_like_the_api() {
        let text = r#"
            # prod routing, reviewed in Git
            [policy."prod/payments"]
            weights = { aws-1 = 90, gcp-1 = 10 }
            allow = ["aws-*", "spiffe://gcp.corp.example"]
            deny = ["aws-dev-1"]

            [policy."prod/web"]
            avoid = ["gcp-1"]
        "#;
        let p = parse(text).unwrap();
        assert_eq!(p.len(), 2);
        let pay = &p[&"prod/payments".parse().unwrap()];
        assert_eq!(pay.weights.values().sum::<u32>(), 100);
        assert_eq!(pay.allow.as_ref().unwrap().len(), 2);
        assert_eq!(p[&"prod/web".parse().unwrap()].allow, None, "no allow list: the default decides");
        assert_eq!(parse("# no policies yet\n").unwrap().len(), 0);
    }

    #[test]
    fn a_bad_entry_rejects_the_whole_file_naming_it() {
        let cases = [
            ("", "empty"),
            ("  \n", "empty"),
            (
                "[policy.\"prod/web\"]\nweights = { aws-1 = 150 }\n",
                "policy.\"prod/web\".weights.aws-1: 150 is out of range",
            ),
            ("[policy.\"prod/web\"]\ncolour = \"red\"\n", "colour"),
            ("[policy.\"Prod/web\"]\navoid = []\n", "policy.\"Prod/web\""),
            ("[policy.\"prod/web\"]\nallow = [\"gcp_1\"]\n", "allow[0]"),
            ("[policies.\"prod/web\"]\n", "policies"),
            ("[policy.\"prod/web\"\n", "line 1"),
        ];
        for (text, want) in cases {
            let e = parse(text).unwrap_err();
            assert!(e.contains(want), "{text:?}: {e}");
        }
    }

    #[test]
    fn polling_answers_only_after_a_change_and_a_vanished_file_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("policies.toml");
        std::fs::write(&path, "[policy.\"prod/web\"]\navoid = [\"gcp-1\"]\n").unwrap();
        let mut f = PolicyFile::new(path.clone());
        assert!(f.poll().is_none(), "unchanged since it was loaded");
        std::fs::write(&path, "[policy.\"prod/web\"]\navoid = [\"gcp-2\", \"gcp-3\"]\n").unwrap();
        assert_eq!(f.poll().unwrap().unwrap().len(), 1);
        assert!(f.poll().is_none());
        std::fs::remove_file(&path).unwrap();
        assert!(f.poll().unwrap().is_err());
        assert!(f.poll().is_none(), "reported once");
        assert!(load(&dir.path().join("nope.toml")).is_err());
    }
}
