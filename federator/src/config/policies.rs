//! `[policies]`: the policies file.

use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;
use skybridge_api::config::duration;

/// `[policies]`: routing policies from a file (kept in Git, mounted from a ConfigMap), which
/// win over the API's for the services they name.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PoliciesSection {
    /// The policies file (docs/federator.md, "Policies from a file"); absent: API policies only.
    #[serde(default)]
    pub path: Option<PathBuf>,
    /// How often the file is checked for changes.
    #[serde(default = "default_reload_interval", with = "duration")]
    pub reload_interval: Duration,
}

impl Default for PoliciesSection {
    fn default() -> Self {
        PoliciesSection { path: None, reload_interval: default_reload_interval() }
    }
}

fn default_reload_interval() -> Duration {
    Duration::from_secs(5)
}
