//! The event log over the API: a page of recent events, and a live Server-Sent Events stream
//! that can resume from `Last-Event-ID` and tells a slow client how many events it missed.

use std::convert::Infallible;
use std::time::Duration;

use axum::Json;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use futures_util::stream::{self, Stream, StreamExt};
use tokio::sync::broadcast::{self, error::RecvError};

use crate::store::{Event, Store};

use super::Ctx;
use super::dto::{EventDto, EventsResponse, LaggedDto};
use super::error::{ApiError, ErrorBody};
use super::handlers::{RawPairs, pairs};
use super::view::EventsQuery;

/// How often an idle stream sends a comment, so that proxies do not time it out.
const KEEP_ALIVE: Duration = Duration::from_secs(15);

/// Recent events from the store.
#[utoipa::path(
    get, path = "/api/v1/events", tag = "events",
    params(EventsQuery),
    responses(
        (status = 200, description = "The most recent events (after `after`, if given), oldest first", body = EventsResponse),
        (status = 400, description = "Bad or unknown query parameter", body = ErrorBody),
        (status = 500, description = "The store failed", body = ErrorBody),
    ),
)]
pub(super) async fn list_events(State(ctx): State<Ctx>, q: RawPairs) -> Result<Json<EventsResponse>, ApiError> {
    let q = EventsQuery::from_query(&pairs(q)?)?;
    let events = ctx
        .state
        .store()
        .events(q.after, q.limit)
        .await
        .map_err(|e| ApiError::internal(format!("reading the event log: {e}")))?;
    Ok(Json(EventsResponse { events: events.into_iter().map(EventDto::from).collect() }))
}

/// Live events as Server-Sent Events.
///
/// Each event has `id` = `seq` and JSON `data` shaped like an item of `GET /api/v1/events`.
/// With a `Last-Event-ID` header (browsers send it when reconnecting) the stream first replays
/// stored events after that seq. A client that reads too slowly receives an `event: lagged`
/// whose data is `{"missed": N}`; it can fetch what it missed from `GET /api/v1/events`.
#[utoipa::path(
    get, path = "/api/v1/events/stream", tag = "events",
    params(("Last-Event-ID" = Option<u64>, Header, description = "Resume after this seq")),
    responses(
        (status = 200, description = "An endless text/event-stream of events", content_type = "text/event-stream", body = EventDto),
        (status = 400, description = "Last-Event-ID is not a number", body = ErrorBody),
        (status = 500, description = "The store failed while replaying", body = ErrorBody),
    ),
)]
pub(super) async fn stream_events(
    State(ctx): State<Ctx>,
    headers: HeaderMap,
) -> Result<Sse<impl Stream<Item = Result<SseEvent, Infallible>>>, ApiError> {
    // Subscribe before reading the store: an event appended in between is then seen at least
    // once (and de-duplicated by seq), never lost.
    let rx = ctx.state.subscribe_events();
    let last_id = match headers.get("last-event-id") {
        None => None,
        Some(v) => Some(v.to_str().ok().and_then(|v| v.trim().parse::<u64>().ok()).ok_or_else(|| {
            ApiError::bad_field("Last-Event-ID", "Last-Event-ID: must be the seq (a non-negative integer) of an event")
        })?),
    };
    let replay = match last_id {
        None => Vec::new(),
        Some(seq) => ctx
            .state
            .store()
            .events(Some(seq), EventsQuery::MAX_LIMIT)
            .await
            .map_err(|e| ApiError::internal(format!("reading the event log: {e}")))?,
    };
    Ok(Sse::new(event_stream(rx, last_id, replay, EventsQuery::MAX_LIMIT))
        .keep_alive(KeepAlive::new().interval(KEEP_ALIVE)))
}

/// The SSE stream: `replay` (stored events after `last_id`, read with `limit`), then live
/// events from `rx` not already replayed. Ends when the federator drops its event sender.
pub(super) fn event_stream(
    rx: broadcast::Receiver<Event>,
    last_id: Option<u64>,
    replay: Vec<Event>,
    limit: usize,
) -> impl Stream<Item = Result<SseEvent, Infallible>> + Send + 'static {
    // A full page means the store held more than we replayed: the oldest ones were skipped.
    let gap = match (last_id, replay.first()) {
        (Some(last), Some(first)) if replay.len() >= limit => first.seq.saturating_sub(last + 1),
        _ => 0,
    };
    let head = (gap > 0).then(|| lagged(gap));
    // De-duplicate against what was replayed only, not against `last_id`: after a store reset
    // seqs start again below it, and those events must still be delivered.
    let newest = replay.last().map(|e| e.seq);
    let replayed = stream::iter(head.into_iter().chain(replay.into_iter().map(sse_event)).map(Ok));
    let live = stream::unfold((rx, newest), |(mut rx, newest)| async move {
        loop {
            let item = match rx.recv().await {
                Ok(e) if newest.is_some_and(|n| e.seq <= n) => continue,
                Ok(e) => sse_event(e),
                Err(RecvError::Lagged(n)) => lagged(n),
                Err(RecvError::Closed) => return None,
            };
            return Some((Ok(item), (rx, newest)));
        }
    });
    replayed.chain(live)
}

fn sse_event(e: Event) -> SseEvent {
    let id = e.seq.to_string();
    let data = serde_json::to_string(&EventDto::from(e)).unwrap_or_default();
    SseEvent::default().id(id).data(data)
}

fn lagged(missed: u64) -> SseEvent {
    let data = serde_json::to_string(&LaggedDto { missed }).unwrap_or_default();
    SseEvent::default().event("lagged").comment(format!("missed {missed} events")).data(data)
}
