//! Distributed tracing of tunneled connections: W3C trace context carried in the stream header
//! and, when `[telemetry] otlp_endpoint` is set, one span per connection on each gateway
//! exported over OTLP/gRPC. With export off the trace context is still propagated and logged.

mod export;
pub mod traceparent;

use std::time::Duration;

use opentelemetry::trace::{
    Span as _, SpanContext, SpanId, SpanKind, Status, TraceContextExt, TraceFlags, TraceId, TraceState, Tracer as _,
    TracerProvider as _,
};
use opentelemetry::{Context, KeyValue};
use opentelemetry_otlp::WithExportConfig;
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::trace::{BatchConfigBuilder, BatchSpanProcessor, Sampler, SdkTracer, SdkTracerProvider, Span};
use skybridge_api::header::TraceContext;
use skybridge_api::model::{Cloud, ClusterId, ServiceKey};

use crate::config::TelemetrySection;
use crate::metrics::Metrics;
pub use traceparent::TraceParent;

/// Why trace export could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum TelemetryError {
    #[error("cannot set up OTLP export to {endpoint} (check telemetry.otlp_endpoint): {reason}")]
    Exporter { endpoint: String, reason: String },
}

/// Which side of the tunnel a connection span describes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    /// A local client's connection, sent through the tunnel (span kind client).
    Egress,
    /// A stream from a peer gateway, delivered to a local endpoint (span kind server).
    Ingress,
}

/// How a traced connection ended.
#[derive(Debug)]
pub struct Outcome<'a> {
    /// The cluster that served it (egress) or `None` when nothing did.
    pub cluster: Option<&'a ClusterId>,
    pub attempts: u32,
    /// Bytes from the client towards the service, and back.
    pub bytes_up: u64,
    pub bytes_down: u64,
    /// `ok`, `reset`, or the refusal status.
    pub result: &'a str,
    /// Set when the connection failed; becomes the span's error status.
    pub error: Option<&'a str>,
}

/// The tracer, or nothing when export is off.
pub struct Telemetry {
    exporting: Option<(SdkTracerProvider, SdkTracer)>,
}

/// Resource attributes naming this gateway in every exported span.
pub struct Identity<'a> {
    pub cluster: &'a ClusterId,
    pub cloud: Cloud,
    pub region: &'a str,
}

impl Telemetry {
    /// No export: trace context is propagated, nothing is recorded.
    pub fn off() -> Telemetry {
        Telemetry { exporting: None }
    }

    /// Starts OTLP export when configured. Must run inside the tokio runtime: the gRPC channel
    /// lives there, while batching runs on the SDK's own thread.
    pub fn start(cfg: &TelemetrySection, who: Identity<'_>, metrics: &Metrics) -> Result<Telemetry, TelemetryError> {
        let Some(endpoint) = &cfg.otlp_endpoint else { return Ok(Telemetry::off()) };
        let err =
            |e: &dyn std::fmt::Display| TelemetryError::Exporter { endpoint: endpoint.clone(), reason: e.to_string() };
        let otlp = opentelemetry_otlp::SpanExporter::builder()
            .with_tonic()
            .with_endpoint(endpoint)
            .with_timeout(cfg.otlp_timeout)
            .build()
            .map_err(|e| err(&e))?;
        let exporter = export::Counted::new(otlp, endpoint.clone(), metrics.otlp_spans.clone());
        let batch = BatchConfigBuilder::default()
            .with_max_queue_size(cfg.max_queue)
            .with_max_export_batch_size(512.min(cfg.max_queue))
            .with_scheduled_delay(cfg.batch_delay)
            .build();
        let resource = Resource::builder()
            .with_service_name(cfg.service_name.clone())
            .with_attributes([
                // These coincide with the semantic-convention values of cloud.provider.
                KeyValue::new("cloud.provider", who.cloud.as_str()),
                KeyValue::new("cloud.region", who.region.to_owned()),
                KeyValue::new("skybridge.cluster", who.cluster.to_string()),
            ])
            .build();
        let provider = SdkTracerProvider::builder()
            .with_span_processor(BatchSpanProcessor::builder(exporter).with_batch_config(batch).build())
            .with_sampler(Sampler::ParentBased(Box::new(Sampler::TraceIdRatioBased(cfg.sample_ratio))))
            .with_resource(resource)
            .build();
        let tracer = provider.tracer("skybridge-gateway");
        tracing::info!(%endpoint, sample_ratio = cfg.sample_ratio, "exporting traces over OTLP");
        Ok(Telemetry { exporting: Some((provider, tracer)) })
    }

    /// Starts tracing one connection of `service:port` from `source`, continuing `parent` when
    /// it is a valid traceparent. `via` is the listener (egress) or `tunnel` (ingress).
    pub fn connection(
        &self,
        side: Side,
        parent: Option<&TraceContext>,
        service: &ServiceKey,
        port: u16,
        source: &ClusterId,
        via: &'static str,
    ) -> ConnTrace {
        let parsed = parent.and_then(|p| TraceParent::parse(&p.traceparent));
        let state = parent.and_then(|p| p.tracestate.clone()).filter(|_| parsed.is_some());
        let Some((_, tracer)) = &self.exporting else {
            // Not recording: pass the caller's decision on, and mark new traces unsampled.
            let tp = match parsed {
                Some(p) => p.child(fastrand::u64(1..)),
                None => TraceParent { trace_id: fastrand::u128(1..), span_id: fastrand::u64(1..), flags: 0 },
            };
            return ConnTrace { span: None, context: TraceContext { traceparent: tp.to_string(), tracestate: state } };
        };
        let cx = match parsed {
            Some(p) => Context::new().with_remote_span_context(SpanContext::new(
                TraceId::from_bytes(p.trace_id.to_be_bytes()),
                SpanId::from_bytes(p.span_id.to_be_bytes()),
                TraceFlags::new(p.flags),
                true,
                state.as_deref().and_then(|s| s.parse::<TraceState>().ok()).unwrap_or_default(),
            )),
            None => Context::new(),
        };
        let (name, kind) = match side {
            Side::Egress => ("skybridge.egress", SpanKind::Client),
            Side::Ingress => ("skybridge.ingress", SpanKind::Server),
        };
        let builder = tracer.span_builder(name).with_kind(kind).with_attributes([
            KeyValue::new("skybridge.service", service.to_string()),
            KeyValue::new("server.port", i64::from(port)),
            KeyValue::new("skybridge.source_cluster", source.to_string()),
            KeyValue::new("skybridge.via", via),
        ]);
        let span = tracer.build_with_context(builder, &cx);
        let sc = span.span_context();
        let tp = TraceParent {
            trace_id: u128::from_be_bytes(sc.trace_id().to_bytes()),
            span_id: u64::from_be_bytes(sc.span_id().to_bytes()),
            flags: sc.trace_flags().to_u8(),
        };
        let header = sc.trace_state().header();
        let tracestate = if header.is_empty() { state } else { Some(header) };
        ConnTrace { span: Some(span), context: TraceContext { traceparent: tp.to_string(), tracestate } }
    }

    /// Sends what is buffered and stops export; waits at most `within`.
    pub async fn shutdown(&self, within: Duration) {
        let Some((provider, _)) = &self.exporting else { return };
        let provider = provider.clone();
        // The SDK's shutdown blocks on its export thread; keep it off the runtime's workers.
        let flush = tokio::task::spawn_blocking(move || provider.shutdown_with_timeout(within));
        match tokio::time::timeout(within, flush).await {
            Ok(Ok(Ok(()))) => {}
            Ok(Ok(Err(e))) => tracing::warn!(error = %e, "flushing traces at shutdown failed"),
            Ok(Err(_)) | Err(_) => tracing::warn!(?within, "flushing traces at shutdown did not finish"),
        }
    }
}

/// One connection's span (when recording) and the trace context to send and log.
pub struct ConnTrace {
    span: Option<Span>,
    /// This hop's trace context: what the egress side puts in the stream header.
    pub context: TraceContext,
}

impl ConnTrace {
    /// A connection that is not traced (health probes).
    pub fn none() -> ConnTrace {
        ConnTrace { span: None, context: TraceContext::default() }
    }

    /// Records a failed attempt before the next candidate is tried.
    pub fn attempt_failed(&mut self, cluster: &ClusterId, error: &str) {
        if let Some(s) = &mut self.span {
            s.add_event(
                "open failed",
                vec![KeyValue::new("skybridge.cluster", cluster.to_string()), KeyValue::new("error", error.to_owned())],
            );
        }
    }

    /// Ends the span with the connection's outcome.
    pub fn finish(self, o: Outcome<'_>) {
        let Some(mut s) = self.span else { return };
        if let Some(c) = o.cluster {
            s.set_attribute(KeyValue::new("skybridge.cluster", c.to_string()));
        }
        s.set_attribute(KeyValue::new("skybridge.attempts", i64::from(o.attempts)));
        s.set_attribute(KeyValue::new("skybridge.bytes_up", o.bytes_up as i64));
        s.set_attribute(KeyValue::new("skybridge.bytes_down", o.bytes_down as i64));
        s.set_attribute(KeyValue::new("skybridge.result", o.result.to_owned()));
        if let Some(e) = o.error {
            s.set_status(Status::error(e.to_owned()));
        }
        s.end();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn conn(parent: Option<&TraceContext>) -> ConnTrace {
        let svc = ServiceKey::from_host("web.prod").unwrap();
        let local = ClusterId::new("aws-1").unwrap();
        Telemetry::off().connection(Side::Egress, parent, &svc, 80, &local, "http")
    }

    #[test]
    fn without_export_the_callers_trace_continues() {
        let parent = TraceContext {
            traceparent: "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01".into(),
            tracestate: Some("vendor=x".into()),
        };
        let t = conn(Some(&parent)).context;
        let p = TraceParent::parse(&t.traceparent).unwrap();
        assert_eq!(p.trace_id, 0x4bf92f3577b34da6a3ce929d0e0e4736);
        assert_ne!(p.span_id, 0x00f067aa0ba902b7, "this hop has its own span id");
        assert!(p.sampled(), "the caller's decision is kept");
        assert_eq!(t.tracestate.as_deref(), Some("vendor=x"));
    }

    #[test]
    fn without_export_a_bad_or_missing_parent_starts_an_unsampled_trace() {
        let bad = TraceContext { traceparent: "garbage".into(), tracestate: Some("vendor=x".into()) };
        for parent in [None, Some(&bad)] {
            let t = conn(parent).context;
            let p = TraceParent::parse(&t.traceparent).unwrap();
            assert!(!p.sampled(), "nothing was recorded, so nothing claims to be");
            assert_eq!(t.tracestate, None, "tracestate without a valid traceparent is dropped");
        }
        assert_ne!(conn(None).context.traceparent, conn(None).context.traceparent);
    }
}
