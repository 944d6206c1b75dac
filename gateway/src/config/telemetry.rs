//! `[telemetry]`: optional OpenTelemetry trace export over OTLP/gRPC (docs/metrics.md).

use std::time::Duration;

use serde::Deserialize;
use skybridge_api::config::{ConfigError, duration, invalid};

/// Trace export; off unless `otlp_endpoint` is set.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TelemetrySection {
    /// The OTLP/gRPC receiver, e.g. `http://otel-collector.observability:4317`.
    #[serde(default)]
    pub otlp_endpoint: Option<String>,
    /// One export call (a batch of spans) gives up after this.
    #[serde(default = "defaults::otlp_timeout", with = "duration")]
    pub otlp_timeout: Duration,
    /// Fraction of traces recorded when the client did not decide (no sampled parent).
    #[serde(default = "defaults::sample_ratio")]
    pub sample_ratio: f64,
    /// Finished spans wait at most this long before they are sent.
    #[serde(default = "defaults::batch_delay", with = "duration")]
    pub batch_delay: Duration,
    /// Spans buffered for export; past this, new spans are dropped rather than slowing traffic.
    #[serde(default = "defaults::max_queue")]
    pub max_queue: usize,
    /// The `service.name` resource attribute.
    #[serde(default = "defaults::service_name")]
    pub service_name: String,
}

impl Default for TelemetrySection {
    fn default() -> Self {
        toml::from_str("").expect("all telemetry keys have defaults")
    }
}

/// Defaults, also quoted in docs/metrics.md.
pub(super) mod defaults {
    use std::time::Duration;

    pub(crate) fn otlp_timeout() -> Duration {
        Duration::from_secs(10)
    }
    pub(crate) fn sample_ratio() -> f64 {
        1.0
    }
    pub(crate) fn batch_delay() -> Duration {
        Duration::from_secs(5)
    }
    pub(crate) fn max_queue() -> usize {
        2048
    }
    pub(crate) fn service_name() -> String {
        "skybridge-gateway".into()
    }
}

impl TelemetrySection {
    pub(super) fn validate(&self) -> Result<(), ConfigError> {
        if let Some(e) = &self.otlp_endpoint {
            let Some(rest) = e.strip_prefix("http://") else {
                let why = if e.starts_with("https://") {
                    "TLS to the collector is not built in; send to a collector agent in the cluster over http://"
                } else {
                    "expected an OTLP/gRPC URL such as http://otel-collector:4317"
                };
                return Err(invalid("telemetry.otlp_endpoint", e, why));
            };
            if rest.is_empty() || rest.starts_with('/') {
                return Err(invalid("telemetry.otlp_endpoint", e, "the URL names no host"));
            }
        }
        if !(0.0..=1.0).contains(&self.sample_ratio) {
            return Err(invalid("telemetry.sample_ratio", self.sample_ratio.to_string(), "must be between 0 and 1"));
        }
        let (ms, five_min) = (Duration::from_millis(1), Duration::from_secs(300));
        for (key, d) in [("telemetry.otlp_timeout", self.otlp_timeout), ("telemetry.batch_delay", self.batch_delay)] {
            super::within(key, d, ms, five_min)?;
        }
        if !(1..=1_000_000).contains(&self.max_queue) {
            return Err(invalid("telemetry.max_queue", self.max_queue, "must be between 1 and 1000000"));
        }
        if self.service_name.is_empty() {
            return Err(invalid("telemetry.service_name", "", "must not be empty"));
        }
        Ok(())
    }
}
