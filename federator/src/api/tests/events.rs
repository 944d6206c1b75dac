//! The event log page and the SSE stream (live delivery, resume, lag notice).

use std::time::Duration;

use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use axum::response::IntoResponse;
use axum::response::sse::Sse;
use futures_util::StreamExt;
use serde_json::json;
use tokio::sync::broadcast;

use super::{Fixture, assert_error, call, fixture, get};
use crate::api::events::event_stream;
use crate::store::Event;

async fn seed(f: &Fixture, n: u64) {
    for i in 1..=n {
        f.state.event("test", format!("event {i}")).await;
    }
}

fn seqs(v: &serde_json::Value) -> Vec<u64> {
    v["events"].as_array().unwrap().iter().map(|e| e["seq"].as_u64().unwrap()).collect()
}

#[tokio::test]
async fn events_page_with_after_and_limit() {
    let f = fixture(None);
    seed(&f, 5).await;
    let v = get(&f.app, "/api/v1/events").await.json();
    assert_eq!(seqs(&v), [1, 2, 3, 4, 5]);
    assert_eq!(v["events"][0]["kind"], "test");
    assert_eq!(v["events"][0]["message"], "event 1");
    assert!(v["events"][0]["at"].as_u64().unwrap() > 0);
    assert_eq!(seqs(&get(&f.app, "/api/v1/events?limit=2").await.json()), [4, 5]);
    assert_eq!(seqs(&get(&f.app, "/api/v1/events?after=3").await.json()), [4, 5]);
    assert_eq!(seqs(&get(&f.app, "/api/v1/events?after=1&limit=1").await.json()), [5]);
    assert_eq!(seqs(&get(&f.app, "/api/v1/events?after=9").await.json()), Vec::<u64>::new());
}

#[tokio::test]
async fn events_bad_query_names_the_parameter() {
    let f = fixture(None);
    for (q, field) in [
        ("limit=0", "limit"),
        ("limit=1001", "limit"),
        ("limit=-1", "limit"),
        ("after=x", "after"),
        ("since=3", "since"),
        ("after=1&after=2", "after"),
    ] {
        let r = get(&f.app, &format!("/api/v1/events?{q}")).await;
        assert_error(&r, StatusCode::BAD_REQUEST, Some(field));
    }
}

/// Reads the next SSE frame (skipping keep-alive comments) within a deadline.
async fn next_frame(
    body: &mut (impl futures_util::Stream<Item = Result<axum::body::Bytes, axum::Error>> + Unpin),
) -> String {
    loop {
        let chunk = tokio::time::timeout(Duration::from_secs(5), body.next())
            .await
            .expect("an SSE frame within 5 s")
            .expect("the stream is open")
            .unwrap();
        let text = String::from_utf8(chunk.to_vec()).unwrap();
        // Keep-alives are comment-only frames.
        if !text.lines().all(|l| l.is_empty() || l.starts_with(':')) {
            return text;
        }
    }
}

fn data(frame: &str) -> serde_json::Value {
    let line = frame.lines().find_map(|l| l.strip_prefix("data: ")).unwrap_or_else(|| panic!("no data: {frame}"));
    serde_json::from_str(line).unwrap()
}

#[tokio::test]
async fn sse_stream_delivers_live_events() {
    let f = fixture(None);
    let r = f.app.clone();
    let resp = tower::ServiceExt::oneshot(r, Request::get("/api/v1/events/stream").body(Body::empty()).unwrap())
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(resp.headers()[header::CONTENT_TYPE], "text/event-stream");
    let mut body = resp.into_body().into_data_stream();
    f.state.event("policy", "hello".into()).await;
    let frame = next_frame(&mut body).await;
    assert!(frame.contains("id: 1\n"), "{frame}");
    assert_eq!(data(&frame)["message"], "hello");
    assert_eq!(data(&frame)["kind"], "policy");
    f.state.event("catalog", "second".into()).await;
    let frame = next_frame(&mut body).await;
    assert_eq!(data(&frame)["seq"], 2);
}

#[tokio::test]
async fn sse_stream_resumes_after_last_event_id() {
    let f = fixture(None);
    seed(&f, 3).await;
    let req = Request::get("/api/v1/events/stream").header("Last-Event-ID", "1").body(Body::empty()).unwrap();
    let resp = tower::ServiceExt::oneshot(f.app.clone(), req).await.unwrap();
    let mut body = resp.into_body().into_data_stream();
    assert_eq!(data(&next_frame(&mut body).await)["seq"], 2);
    assert_eq!(data(&next_frame(&mut body).await)["seq"], 3);
    f.state.event("test", "live".into()).await;
    let live = data(&next_frame(&mut body).await);
    assert_eq!((live["seq"].as_u64(), live["message"].as_str()), (Some(4), Some("live")));

    let bad = Request::get("/api/v1/events/stream").header("Last-Event-ID", "x").body(Body::empty()).unwrap();
    assert_error(&call(&f.app, bad).await, StatusCode::BAD_REQUEST, Some("Last-Event-ID"));
}

fn ev(seq: u64) -> Event {
    Event { seq, at: seq, kind: "k".into(), message: format!("m{seq}") }
}

/// Renders `event_stream` as the SSE body a client would see and returns its first frames.
async fn frames(
    stream: impl futures_util::Stream<Item = Result<axum::response::sse::Event, std::convert::Infallible>> + Send + 'static,
    n: usize,
) -> Vec<String> {
    let mut body = Sse::new(stream).into_response().into_body().into_data_stream();
    let mut out = Vec::new();
    for _ in 0..n {
        out.push(next_frame(&mut body).await);
    }
    out
}

#[tokio::test]
async fn sse_tells_a_slow_client_how_many_events_it_missed() {
    let (tx, rx) = broadcast::channel(2);
    for seq in 1..=5 {
        tx.send(ev(seq)).unwrap();
    }
    let got = frames(event_stream(rx, None, Vec::new(), 1000), 3).await;
    assert!(got[0].contains("event: lagged"), "{}", got[0]);
    assert!(got[0].contains(": missed 3 events"), "{}", got[0]);
    assert_eq!(data(&got[0]), json!({"missed": 3}));
    assert_eq!(data(&got[1])["seq"], 4);
    assert_eq!(data(&got[2])["seq"], 5);
}

#[tokio::test]
async fn sse_replay_skips_duplicates_and_reports_a_truncated_replay() {
    let (tx, rx) = broadcast::channel(16);
    // 4 and 5 were both replayed from the store and broadcast live: sent once.
    for seq in 4..=6 {
        tx.send(ev(seq)).unwrap();
    }
    let got = frames(event_stream(rx, Some(1), vec![ev(4), ev(5)], 2), 4).await;
    // The store page was full (limit 2) and started at 4: events 2 and 3 were skipped.
    assert_eq!(data(&got[0]), json!({"missed": 2}));
    assert_eq!(data(&got[1])["seq"], 4);
    assert_eq!(data(&got[2])["seq"], 5);
    assert_eq!(data(&got[3])["seq"], 6);
}

#[tokio::test]
async fn sse_after_a_store_reset_still_delivers_lower_seqs() {
    let (tx, rx) = broadcast::channel(4);
    tx.send(ev(1)).unwrap();
    // The client last saw seq 100 of a previous store; nothing is stored after it now.
    let got = frames(event_stream(rx, Some(100), Vec::new(), 1000), 1).await;
    assert_eq!(data(&got[0])["seq"], 1);
}
