//! What `/status` says about the federator connection and where the routed catalog came from.
//! Plain data written by the client and the cache writer; rendering takes the time as an
//! argument.

use serde::Serialize;

/// Where the catalog being routed on came from.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum CatalogSource {
    /// Nothing yet: waiting for the federator (the config's static sections, if any, serve).
    #[default]
    None,
    /// The cache file read at start-up; the federator has not answered since.
    Cache,
    /// The federator, in this run.
    Federator,
}

/// The catalog cache file as `/status` shows it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct CacheStatus {
    pub file: String,
    /// Catalog version in the file (read at start-up, or last written).
    pub version: Option<u64>,
    /// When the gateway wrote it, Unix milliseconds.
    pub written_at_unix_ms: Option<u64>,
    /// Why the file found at start-up was not used.
    pub ignored: Option<String>,
    /// Why the last write failed; cleared by the next good write.
    pub write_error: Option<String>,
}

/// What `/status` shows about the federator connection.
#[derive(Debug, Clone, Default, Serialize)]
pub struct FederationStatus {
    /// `connecting`, `connected` or `disconnected`.
    pub state: String,
    /// The replica connected to, or being tried (`ip:port` as resolved).
    pub address: String,
    /// `federator.address` or `federator.addresses` as configured.
    pub configured: Vec<String>,
    /// The replica addresses of the last connect round, in the order they were tried.
    pub replicas: Vec<String>,
    /// The catalog version being routed on (0: none yet).
    pub catalog_version: u64,
    pub catalog_source: CatalogSource,
    /// `None` when `catalog_cache` is off.
    pub cache: Option<CacheStatus>,
    pub last_error: Option<String>,
    pub connects: u64,
}

impl FederationStatus {
    /// One line for `/status`: `cached (version 7, age 3m12s)`, `federator (version 8)` or
    /// `none (waiting for the federator)`.
    pub fn catalog_summary(&self, now_unix_ms: u64) -> String {
        match self.catalog_source {
            CatalogSource::None => "none (waiting for the federator)".into(),
            CatalogSource::Federator => format!("federator (version {})", self.catalog_version),
            CatalogSource::Cache => {
                let age = self.cache_age_ms(now_unix_ms).map_or_else(|| "unknown".into(), format_age);
                format!("cached (version {}, age {age})", self.catalog_version)
            }
        }
    }

    fn cache_age_ms(&self, now_unix_ms: u64) -> Option<u64> {
        let written = self.cache.as_ref()?.written_at_unix_ms?;
        Some(now_unix_ms.saturating_sub(written))
    }

    /// The JSON object `/status` shows, with the cache's age as of `now_unix_ms`.
    pub fn view(&self, now_unix_ms: u64) -> serde_json::Value {
        let mut v = serde_json::to_value(self).expect("status serializes");
        if let (Some(age), Some(cache)) = (self.cache_age_ms(now_unix_ms), v.get_mut("cache")) {
            cache["age_s"] = serde_json::json!(age / 1000);
            cache["age"] = serde_json::json!(format_age(age));
        }
        v
    }
}

/// A coarse age for people: `45s`, `3m12s`, `5h07m`, `2d03h`.
pub fn format_age(ms: u64) -> String {
    let s = ms / 1000;
    match s {
        0..60 => format!("{s}s"),
        60..3600 => format!("{}m{:02}s", s / 60, s % 60),
        3600..86_400 => format!("{}h{:02}m", s / 3600, s % 3600 / 60),
        _ => format!("{}d{:02}h", s / 86_400, s % 86_400 / 3600),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ages_read_like_people_write_them() {
        assert_eq!(format_age(999), "0s");
        assert_eq!(format_age(45_000), "45s");
        assert_eq!(format_age(192_000), "3m12s");
        assert_eq!(format_age(5 * 3_600_000 + 7 * 60_000 + 5_000), "5h07m");
        assert_eq!(format_age(2 * 86_400_000 + 3 * 3_600_000), "2d03h");
    }

    #[test]
    fn summary_and_view_follow_the_source() {
        let mut s = FederationStatus::default();
        assert_eq!(s.catalog_summary(0), "none (waiting for the federator)");
        s.catalog_source = CatalogSource::Cache;
        s.catalog_version = 7;
        s.cache = Some(CacheStatus {
            file: "/c.pb".into(),
            version: Some(7),
            written_at_unix_ms: Some(1_000),
            ..Default::default()
        });
        assert_eq!(s.catalog_summary(193_000), "cached (version 7, age 3m12s)");
        let v = s.view(193_000);
        assert_eq!(v["catalog_source"], "cache");
        assert_eq!(v["cache"]["age_s"], 192);
        assert_eq!(v["cache"]["written_at_unix_ms"], 1_000);
        s.catalog_source = CatalogSource::Federator;
        s.catalog_version = 8;
        assert_eq!(s.catalog_summary(0), "federator (version 8)");
        s.cache = None;
        assert!(s.view(0)["cache"].is_null());
    }
}
