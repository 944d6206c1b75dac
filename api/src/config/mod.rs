//! Conventions every Skybridge config file follows: errors that name the key, the value and the
//! reason; human durations (`250ms`, `5s`, `2m`, `1h`).

pub mod duration;

use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

/// Why a config was rejected.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("config file {path} is not valid: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("config key `{key}` = {value:?}: {reason}")]
    Invalid { key: String, value: String, reason: String },
}

/// A semantic error naming the key, the value and the reason.
pub fn invalid(key: impl Into<String>, value: impl ToString, reason: impl Into<String>) -> ConfigError {
    ConfigError::Invalid { key: key.into(), value: value.to_string(), reason: reason.into() }
}

/// Reads and parses a TOML config file; `parse` validates the text. Parse errors carry the path.
pub fn load<T>(path: &std::path::Path, parse: impl FnOnce(&str) -> Result<T, ConfigError>) -> Result<T, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read { path: path.to_owned(), source })?;
    parse(&text).map_err(|e| match e {
        ConfigError::Parse { message, .. } => ConfigError::Parse { path: path.to_owned(), message },
        other => other,
    })
}

/// Parses TOML text into `T`, mapping syntax and type errors (which name the key) to
/// [`ConfigError::Parse`].
pub fn from_toml<T: serde::de::DeserializeOwned>(text: &str) -> Result<T, ConfigError> {
    toml::from_str(text).map_err(|e| ConfigError::Parse { path: PathBuf::from("<text>"), message: e.to_string() })
}

/// The `[tls]` section of every config: certificate, key and trust bundle files, reloaded when
/// they change.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsSection {
    pub cert: PathBuf,
    pub key: PathBuf,
    pub trust_bundle: PathBuf,
    #[serde(default = "default_reload_interval", with = "duration")]
    pub reload_interval: Duration,
}

fn default_reload_interval() -> Duration {
    Duration::from_secs(5)
}

impl TlsSection {
    /// Makes the paths relative to `base` (the config file's folder), as operators expect.
    pub fn resolve(&mut self, base: &std::path::Path) {
        for p in [&mut self.cert, &mut self.key, &mut self.trust_bundle] {
            if p.is_relative() {
                *p = base.join(&*p);
            }
        }
    }
}
