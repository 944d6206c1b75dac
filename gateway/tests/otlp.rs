//! Trace export: two gateways in one process send their connection spans over OTLP/gRPC to a
//! receiver built from the official OpenTelemetry collector protocol (opentelemetry-proto's
//! generated `TraceService`), and the spans link into one trace across the tunnel.

mod common;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{GwSpec, Pki, backends, eventually, free_udp, service, start_pair, wait_metric};
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{TraceService, TraceServiceServer};
use opentelemetry_proto::tonic::collector::trace::v1::{ExportTraceServiceRequest, ExportTraceServiceResponse};
use opentelemetry_proto::tonic::common::v1::{KeyValue, any_value};
use opentelemetry_proto::tonic::trace::v1::span::SpanKind;
use opentelemetry_proto::tonic::trace::v1::status::StatusCode;
use skybridge_gateway::app::Running;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// One received span with the resource it came from.
#[derive(Debug, Clone)]
struct Got {
    gateway: String,
    service_name: String,
    span: opentelemetry_proto::tonic::trace::v1::Span,
}

impl Got {
    fn attr(&self, key: &str) -> Option<String> {
        text(&self.span.attributes, key)
    }
}

fn text(attrs: &[KeyValue], key: &str) -> Option<String> {
    let v = attrs.iter().find(|kv| kv.key == key)?.value.as_ref()?.value.as_ref()?;
    Some(match v {
        any_value::Value::StringValue(s) => s.clone(),
        any_value::Value::IntValue(i) => i.to_string(),
        other => format!("{other:?}"),
    })
}

#[derive(Clone, Default)]
struct Receiver(Arc<Mutex<Vec<Got>>>);

#[tonic::async_trait]
impl TraceService for Receiver {
    async fn export(
        &self,
        req: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        let mut got = self.0.lock().unwrap();
        for rs in req.into_inner().resource_spans {
            let attrs: &[KeyValue] = rs.resource.as_ref().map(|r| r.attributes.as_slice()).unwrap_or(&[]);
            let gateway = text(attrs, "skybridge.cluster").unwrap_or_default();
            let service_name = text(attrs, "service.name").unwrap_or_default();
            for ss in rs.scope_spans {
                for span in ss.spans {
                    got.push(Got { gateway: gateway.clone(), service_name: service_name.clone(), span });
                }
            }
        }
        Ok(tonic::Response::new(ExportTraceServiceResponse { partial_success: None }))
    }
}

impl Receiver {
    async fn start() -> (Receiver, SocketAddr) {
        let incoming = tonic::transport::server::TcpIncoming::bind("127.0.0.1:0".parse().unwrap()).unwrap();
        let addr = incoming.local_addr().unwrap();
        let r = Receiver::default();
        let svc = TraceServiceServer::new(r.clone());
        tokio::spawn(tonic::transport::Server::builder().add_service(svc).serve_with_incoming(incoming));
        (r, addr)
    }

    fn trace(&self, trace_id: &[u8]) -> Vec<Got> {
        self.0.lock().unwrap().iter().filter(|g| g.span.trace_id == trace_id).cloned().collect()
    }

    /// Waits until the trace has `n` spans (both gateways' exports land separately).
    async fn wait_trace(&self, trace_id: &[u8], n: usize) -> Vec<Got> {
        let ok = eventually(Duration::from_secs(10), || self.trace(trace_id).len() >= n).await;
        assert!(ok, "trace {} has {:?}", hex(trace_id), self.trace(trace_id));
        self.trace(trace_id)
    }
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn telemetry(otlp: SocketAddr) -> String {
    format!("\n[telemetry]\notlp_endpoint = \"http://{otlp}\"\nbatch_delay = \"50ms\"\notlp_timeout = \"2s\"\n")
}

/// aws-1 (egress) and gcp-1 (hosts `web`; `empty` has no endpoints), both exporting to `otlp`.
async fn pair(pki: &Pki, otlp: SocketAddr) -> (Running, Running) {
    let web = backends::http("gcp-1").await;
    let services = |eps: bool| {
        let web_eps = if eps { vec![web] } else { vec![] };
        [
            service("prod", "web", &["gcp-1"], 80, "http", &web_eps),
            service("prod", "empty", &["gcp-1"], 80, "http", &[]),
        ]
        .concat()
    };
    start_pair(pki, services, &telemetry(otlp), &telemetry(otlp)).await
}

async fn get(addr: SocketAddr, host: &str, traceparent: Option<&str>) -> String {
    let mut s = TcpStream::connect(addr).await.unwrap();
    let tp = traceparent.map(|t| format!("traceparent: {t}\r\n")).unwrap_or_default();
    s.write_all(format!("GET / HTTP/1.1\r\nHost: {host}\r\n{tp}\r\n").as_bytes()).await.unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).await.unwrap();
    out
}

fn one<'a>(spans: &'a [Got], name: &str) -> &'a Got {
    let found: Vec<&Got> = spans.iter().filter(|g| g.span.name == name).collect();
    assert_eq!(found.len(), 1, "want one {name} span in {spans:?}");
    found[0]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connection_spans_form_one_trace_across_the_tunnel() {
    common::init();
    let pki = Pki::new();
    let (recv, otlp) = Receiver::start().await;
    let (a, b) = pair(&pki, otlp).await;
    let http = a.addrs.http.unwrap();

    // A client that is itself traced: both gateways' spans join its trace.
    let tid = "4bf92f3577b34da6a3ce929d0e0e4736";
    let out = get(http, "web.prod", Some(&format!("00-{tid}-00f067aa0ba902b7-01"))).await;
    assert!(out.ends_with("hello from gcp-1\n"), "{out}");
    let spans = recv.wait_trace(&u128::from_str_radix(tid, 16).unwrap().to_be_bytes(), 2).await;
    let egress = one(&spans, "skybridge.egress");
    let ingress = one(&spans, "skybridge.ingress");
    assert_eq!((egress.gateway.as_str(), ingress.gateway.as_str()), ("aws-1", "gcp-1"));
    assert_eq!(egress.service_name, "skybridge-gateway");
    assert_eq!(egress.span.kind, SpanKind::Client as i32);
    assert_eq!(ingress.span.kind, SpanKind::Server as i32);
    assert_eq!(hex(&egress.span.parent_span_id), "00f067aa0ba902b7", "egress continues the client's span");
    assert_eq!(ingress.span.parent_span_id, egress.span.span_id, "ingress is the egress span's child");
    for g in [egress, ingress] {
        assert_eq!(g.attr("skybridge.service").as_deref(), Some("prod/web"));
        assert_eq!(g.attr("skybridge.result").as_deref(), Some("ok"));
        assert_eq!(g.attr("skybridge.source_cluster").as_deref(), Some("aws-1"));
    }
    assert_eq!(egress.attr("skybridge.cluster").as_deref(), Some("gcp-1"));
    assert_eq!(egress.attr("skybridge.via").as_deref(), Some("http"));
    let down: u64 = egress.attr("skybridge.bytes_down").unwrap().parse().unwrap();
    assert_eq!(down, out.len() as u64);
    assert_eq!(ingress.attr("skybridge.bytes_down"), egress.attr("skybridge.bytes_down"));

    // The client said "not sampled": nothing is recorded for its trace, and the decision
    // reaches the far side through the stream header. A sampled request sent after it proves
    // the batch that would have held those spans has been exported.
    let quiet = "11111111111111111111111111111111";
    get(http, "web.prod", Some(&format!("00-{quiet}-00f067aa0ba902b7-00"))).await;
    let later = "22222222222222222222222222222222";
    get(http, "web.prod", Some(&format!("00-{later}-00f067aa0ba902b7-01"))).await;
    recv.wait_trace(&u128::from_str_radix(later, 16).unwrap().to_be_bytes(), 2).await;
    assert!(recv.trace(&u128::from_str_radix(quiet, 16).unwrap().to_be_bytes()).is_empty());

    // No client context: the egress span is the root. A refused open is an error on both sides.
    let before = recv.0.lock().unwrap().len();
    let out = get(http, "empty.prod", None).await;
    assert!(out.starts_with("HTTP/1.1 502"), "{out}");
    let ok = eventually(Duration::from_secs(10), || {
        recv.0.lock().unwrap()[before..]
            .iter()
            .filter(|g| g.attr("skybridge.service").as_deref() == Some("prod/empty"))
            .count()
            >= 2
    })
    .await;
    assert!(ok, "no spans for the refused connection");
    let spans: Vec<Got> = recv.0.lock().unwrap()[before..]
        .iter()
        .filter(|g| g.attr("skybridge.service").as_deref() == Some("prod/empty"))
        .cloned()
        .collect();
    let egress = one(&spans, "skybridge.egress");
    let ingress = one(&spans, "skybridge.ingress");
    assert!(egress.span.parent_span_id.is_empty(), "a new trace starts at the egress gateway");
    assert_eq!(ingress.span.trace_id, egress.span.trace_id);
    assert_eq!(ingress.attr("skybridge.result").as_deref(), Some("no_route"));
    assert_eq!(egress.attr("skybridge.result").as_deref(), Some("no_route"));
    for g in [egress, ingress] {
        let status = g.span.status.as_ref().expect("status");
        assert_eq!(status.code, StatusCode::Error as i32, "{g:?}");
        assert!(status.message.contains("no endpoints"), "{status:?}");
    }
    assert!(egress.span.events.iter().any(|e| e.name == "open failed"), "the failed attempt is an event");

    assert!(wait_metric(a.addrs.admin, "skybridge_gateway_otlp_spans_total{result=\"exported\"}", 3.0).await);
    a.shutdown().await;
    b.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_collector_costs_spans_not_traffic() {
    common::init();
    let pki = Pki::new();
    let web = backends::http("aws-1").await;
    // A port nothing listens on.
    let dead = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
    let a = GwSpec {
        cluster: "aws-1".into(),
        tunnel: free_udp(),
        certs: pki.issue_files("aws-1", "aws-1", 1),
        peers: vec![],
        extra: format!("{}{}", service("prod", "web", &["aws-1"], 80, "http", &[web]), telemetry(dead)),
    }
    .start()
    .await;
    for _ in 0..5 {
        let out = get(a.addrs.http.unwrap(), "web.prod", None).await;
        assert!(out.ends_with("hello from aws-1\n"), "{out}");
    }
    assert!(wait_metric(a.addrs.admin, "skybridge_gateway_otlp_spans_total{result=\"failed\"}", 1.0).await);
    a.shutdown().await;
}
