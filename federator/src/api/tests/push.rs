//! Policies written through the API reach connected gateways: a control session (the real
//! one, fed in-process instead of over gRPC) gets them in its snapshot and in a delta on every
//! change.

use std::time::Duration;

use axum::http::{Method, StatusCode};
use prometheus_client::registry::Registry;
use skybridge_api::model::Cloud;
use skybridge_api::proto::{policies_from_wire, wire};
use tokio::sync::mpsc;
use tokio_stream::StreamExt;
use tokio_stream::wrappers::ReceiverStream;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tonic::Status;
use wire::{federator_message, gateway_message};

use super::{Fixture, TOKEN, cluster, fixture, key, write};
use crate::control::{ControlLimits, ControlService};
use crate::metrics::Metrics;

type Inbound = mpsc::Sender<Result<wire::GatewayMessage, Status>>;
type Outbound = crate::control::SessionStream;

/// A gateway of aws-1 connected to the fixture's federator state.
fn connect(f: &Fixture, shutdown: &CancellationToken, hello: wire::Hello) -> (Inbound, Outbound) {
    let limits = ControlLimits {
        queue: 16,
        hello_timeout: Duration::from_secs(5),
        snapshot_send_timeout: Duration::from_secs(60),
        snapshot_ack_timeout: Duration::from_secs(30),
    };
    let metrics = Metrics::register(&mut Registry::default());
    let svc = ControlService::new(f.state.clone(), limits, shutdown.clone(), TaskTracker::new(), metrics);
    let (tx, rx) = mpsc::channel(16);
    let out = svc.start(cluster("aws-1"), Cloud::Aws, "gw-test".into(), hello, ReceiverStream::new(rx));
    (tx, out)
}

async fn next(out: &mut Outbound) -> federator_message::Msg {
    let m = tokio::time::timeout(Duration::from_secs(5), out.next()).await.expect("a message within 5 s");
    m.expect("stream open").expect("not an error").msg.expect("a message body")
}

/// Skips deltas that carry no policies (a gateway-list change), returning the next policy list.
async fn next_policies(out: &mut Outbound) -> Vec<String> {
    loop {
        match next(out).await {
            federator_message::Msg::Delta(d) if d.policies_changed => {
                assert_eq!((d.from_version, d.to_version), (7, 7), "a policy change is no catalog change");
                assert!(d.services_upserted.is_empty() && d.services_removed.is_empty());
                let p = policies_from_wire(&d.policies).unwrap();
                return p.keys().map(ToString::to_string).collect();
            }
            federator_message::Msg::Delta(_) => {}
            federator_message::Msg::Snapshot(s) => panic!("unexpected snapshot of version {}", s.version),
        }
    }
}

async fn put(f: &Fixture, uri: &str, body: &str) {
    let r = write(&f.app, Method::PUT, uri, Some(&format!("Bearer {TOKEN}")), body).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
}

fn hello() -> wire::Hello {
    wire::Hello { cluster: "aws-1".into(), cloud: "aws".into(), instance: "gw-test".into(), ..Default::default() }
}

#[tokio::test]
async fn a_put_policy_reaches_a_connected_gateway() {
    let f = fixture(Some(TOKEN));
    put(&f, "/api/v1/policies/prod/web", r#"{"avoid": ["gcp-1"]}"#).await;
    let shutdown = CancellationToken::new();
    let (tx, mut out) = connect(&f, &shutdown, hello());

    // The snapshot carries the policies in its first part.
    let federator_message::Msg::Snapshot(first) = next(&mut out).await else { panic!("expected a snapshot") };
    let policies = policies_from_wire(&first.policies).unwrap();
    assert_eq!(policies.keys().map(ToString::to_string).collect::<Vec<_>>(), ["prod/web"]);
    assert_eq!(policies[&key("prod", "web")].avoid, [cluster("gcp-1")]);
    let mut more = first.more;
    while more {
        let federator_message::Msg::Snapshot(part) = next(&mut out).await else { panic!("expected a part") };
        assert!(part.policies.is_empty(), "policies ride in the first part only");
        more = part.more;
    }
    tx.send(Ok(wire::GatewayMessage { msg: Some(gateway_message::Msg::Ack(wire::Ack { version: 7 })) })).await.unwrap();

    // Every change reaches it promptly, as the whole list.
    put(&f, "/api/v1/policies/prod/payments", r#"{"weights": {"aws-1": 70, "gcp-1": 30}}"#).await;
    assert_eq!(next_policies(&mut out).await, ["prod/payments", "prod/web"]);
    let r = write(&f.app, Method::DELETE, "/api/v1/policies/prod/web", Some(&format!("Bearer {TOKEN}")), "").await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
    assert_eq!(next_policies(&mut out).await, ["prod/payments"]);
    shutdown.cancel();
}

#[tokio::test]
async fn a_gateway_that_is_up_to_date_still_gets_the_policies() {
    let f = fixture(Some(TOKEN));
    put(&f, "/api/v1/policies/prod/web", r#"{"failover": ["aws-1"]}"#).await;
    let shutdown = CancellationToken::new();
    // Policies are not part of the catalog digest: a gateway holding version 7 may hold older
    // policies, so the delta that confirms its version carries them.
    let c = f.state.catalog();
    let (_tx, mut out) =
        connect(&f, &shutdown, wire::Hello { have_version: c.version, have_digest: c.digest, ..hello() });
    let federator_message::Msg::Delta(d) = next(&mut out).await else { panic!("expected the confirming delta") };
    assert!(d.policies_changed && d.gateways_changed);
    assert_eq!(policies_from_wire(&d.policies).unwrap().len(), 1);
    shutdown.cancel();
}
