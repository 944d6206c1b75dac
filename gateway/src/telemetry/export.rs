//! The OTLP exporter with its results counted and failures logged once per outage, so an
//! operator sees a broken collector in metrics and logs rather than silently missing traces.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use opentelemetry_sdk::Resource;
use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::trace::{SpanData, SpanExporter};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;

use crate::metrics::ResultLabels;

#[derive(Debug)]
pub(super) struct Counted {
    inner: opentelemetry_otlp::SpanExporter,
    endpoint: String,
    spans: Family<ResultLabels, Counter>,
    failing: AtomicBool,
}

impl Counted {
    pub(super) fn new(
        inner: opentelemetry_otlp::SpanExporter,
        endpoint: String,
        spans: Family<ResultLabels, Counter>,
    ) -> Counted {
        Counted { inner, endpoint, spans, failing: AtomicBool::new(false) }
    }
}

impl SpanExporter for Counted {
    async fn export(&self, batch: Vec<SpanData>) -> OTelSdkResult {
        let n = batch.len() as u64;
        let r = self.inner.export(batch).await;
        let result = if r.is_ok() { "exported" } else { "failed" };
        self.spans.get_or_create(&ResultLabels { result }).inc_by(n);
        let was_failing = self.failing.swap(r.is_err(), Ordering::Relaxed);
        match (&r, was_failing) {
            (Err(e), false) => {
                tracing::warn!(endpoint = %self.endpoint, error = %e, spans = n, "OTLP export failed; spans dropped")
            }
            (Ok(()), true) => tracing::info!(endpoint = %self.endpoint, "OTLP export works again"),
            _ => {}
        }
        r
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        self.inner.shutdown_with_timeout(timeout)
    }

    fn force_flush(&self) -> OTelSdkResult {
        self.inner.force_flush()
    }

    fn set_resource(&mut self, resource: &Resource) {
        self.inner.set_resource(resource);
    }
}
